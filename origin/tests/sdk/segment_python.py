"""Segment's analytics-python, unmodified, pointed at an Attune origin
through its own `host` setting. Args: origin URL, write key, user id, item."""
import sys

import segment.analytics as analytics

origin, write_key, user_id, item = sys.argv[1:5]
failures = []
analytics.write_key = write_key
analytics.host = origin
analytics.on_error = lambda error, items: failures.append(error)
analytics.identify(user_id, {"plan": "python"})
analytics.track(user_id, "Product Clicked", {"product_id": item})
analytics.page(anonymous_id=f"{user_id}-device", name="Article", properties={"item_id": item})
analytics.flush()
analytics.shutdown()
if failures:
    sys.exit(f"analytics-python errors: {failures}")
