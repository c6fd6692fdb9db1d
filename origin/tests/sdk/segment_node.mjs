// Segment's analytics-node, unmodified, pointed at an Attune origin through
// its own `host` option. Args: origin URL, write key, user id, item.
import { Analytics } from "@segment/analytics-node";

const [origin, writeKey, userId, item] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host: origin, flushAt: 3, maxRetries: 3 });
analytics.on("error", (e) => {
  console.error("analytics-node error:", e);
  process.exitCode = 1;
});
analytics.identify({ userId, traits: { plan: "node" } });
analytics.track({ userId, event: "Product Clicked", properties: { product_id: item } });
analytics.page({ anonymousId: `${userId}-device`, name: "Article", properties: { item_id: item } });
await analytics.closeAndFlush();
