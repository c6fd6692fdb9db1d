// What a site imports to run RudderStack's JS SDK.
import { RudderAnalytics } from "@rudderstack/analytics-js";
const analytics = new RudderAnalytics();
analytics.load("key", "/collect");
analytics.page();
