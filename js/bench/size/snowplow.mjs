// What a site imports to run the Snowplow browser tracker.
import { newTracker, trackPageView, enableActivityTracking } from "@snowplow/browser-tracker";
newTracker("sp", "/collect");
enableActivityTracking({ minimumVisitLength: 10, heartbeatDelay: 10 });
trackPageView();
