"""A client generated from the origin's own /openapi.json by
openapi-python-client (PyPI), the way a mobile or server team would make
one, then used for the calls such an app makes: the catalog, a batch of
events (typed /v1/events JSON), a Segment batch, the profile and the
recommendations, each parsed into the generated models.

Args: origin URL, the site's API key, its site key, a scratch directory.
Prints one JSON line of what came back; exits non-zero on a failure."""
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

origin, api_key, site_key, scratch = sys.argv[1:5]


def uuid7() -> str:
    """A UUIDv7 (the time-ordered ids events carry)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


spec = os.path.join(scratch, "openapi.json")
with urllib.request.urlopen(f"{origin}/openapi.json") as r, open(spec, "wb") as f:
    f.write(r.read())
generator = os.path.join(os.path.dirname(sys.executable), "openapi-python-client")
subprocess.run(
    [generator, "generate", "--path", spec, "--output-path", os.path.join(scratch, "client")],
    check=True,
    capture_output=True,
)
sys.path.insert(0, os.path.join(scratch, "client"))

from attune_origin_client import AuthenticatedClient, Client  # noqa: E402
from attune_origin_client.api.api import get_profile, get_recommendations  # noqa: E402
from attune_origin_client.api.catalog import post_items  # noqa: E402
from attune_origin_client.api.ingest import post_events  # noqa: E402
from attune_origin_client.api.segment import batch  # noqa: E402
from attune_origin_client.models import (  # noqa: E402
    Accepted,
    BatchJson,
    EventJson,
    Item,
    ItemsRequest,
    Message,
    Profile,
    Recommendations,
    SegmentAccepted,
    SegmentBatch,
)
from attune_origin_client.models.message_properties_type_0 import (  # noqa: E402
    MessagePropertiesType0,
)

server = AuthenticatedClient(base_url=origin, token=api_key)
public = Client(base_url=origin)


def check(response, model, status):
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(f"{response.status_code} {response.content!r}: expected {status} {model.__name__}")
    return response.parsed


check(
    post_items.sync_detailed(
        client=server,
        body=ItemsRequest(items=[Item(id="g1", tags=["arts"]), Item(id="g2", tags=["arts"])]),
    ),
    object,
    200,
)
now = int(time.time() * 1000)
events = check(
    post_events.sync_detailed(
        client=public,
        body=BatchJson(
            schema_version=1,
            site_key=site_key,
            anonymous_id="gen-1",
            sent_at=now,
            events=[EventJson(id=uuid7(), kind="click", ts=now, item="g1")],
        ),
    ),
    Accepted,
    202,
)
segment = check(
    batch.sync_detailed(
        client=public,
        body=SegmentBatch(
            write_key=api_key,
            batch=[
                Message(
                    type_="track",
                    user_id="u-gen",
                    message_id="gen-m1",
                    event="Product Clicked",
                    properties=MessagePropertiesType0.from_dict({"product_id": "g2"}),
                )
            ],
        ),
    ),
    SegmentAccepted,
    200,
)
deadline = time.time() + 30
while True:
    profile = check(get_profile.sync_detailed(client=server, user="anon:gen-1"), Profile, 200)
    if profile.counts.additional_properties.get("click") == 1 or time.time() > deadline:
        break
    time.sleep(0.2)
recs = check(get_recommendations.sync_detailed(client=server, user="u-gen", k=5), Recommendations, 200)
print(
    json.dumps(
        {
            "events_accepted": events.accepted,
            "segment_accepted": segment.accepted,
            "profile_counts": profile.counts.additional_properties,
            "recommendations_user": recs.user,
            "recommended": [i.item for i in recs.items],
        }
    )
)
