"""The collection API's routers, one per protocol family, each module's `router`: Universal
Analytics and canonical JSON events (`pixel`: `/collect`, GET and POST, and `/batch`), GA4
(`ga4`: `/g/collect`, `/mp/collect`), Segment's tracking API (`segment`:
`/v1`), Snowplow's tracker protocol (`snowplow`: `/com.snowplowanalytics.snowplow/tp2`, `/i`),
operations (`ops`: `/healthz`, `/readyz`, `/metrics`) and administration (`admin`: `/admin/roll`,
`/admin/counters`, behind a token). `refusals` holds what Segment's and Snowplow's
routes share: each event validated on its own, refused ones counted and in the rejects log.

Every handler validates the whole request first (nothing malformed reaches the log), then awaits
the store's group commit, and only then answers 2xx.
"""
