"""The collection API's routers, one per protocol family, each module's `router`: the pixel and
canonical JSON events (`pixel`: `/collect`, GET and POST), Segment's tracking API (`segment`:
`/v1`) and operations (`ops`: `/healthz`, `/readyz`).

Every handler validates the whole request first (nothing malformed reaches the log), then awaits
the store's group commit, and only then answers 2xx.
"""
