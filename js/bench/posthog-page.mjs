// posthog-js as a site would run it for the main-thread benchmark:
// autocapture (clicks), page views and page leave (scroll depth).
import posthog from "posthog-js";
posthog.init("phc_bench", {
  api_host: location.origin + "/ingest",
  autocapture: true,
  capture_pageview: true,
  capture_pageleave: true,
  disable_session_recording: true,
  advanced_disable_decide: true,
  disable_surveys: true,
});
window.ready = true;
