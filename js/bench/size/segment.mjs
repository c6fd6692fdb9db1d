// What a site imports to run Segment's analytics-next.
import { AnalyticsBrowser } from "@segment/analytics-next";
AnalyticsBrowser.load({ writeKey: "key" }).page();
