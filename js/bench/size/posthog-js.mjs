// What a site imports to run posthog-js (its core bundle).
import posthog from "posthog-js";
posthog.init("phc_bench", { api_host: "/ingest" });
