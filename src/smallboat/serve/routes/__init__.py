"""The prediction API's routers, one per protocol family, each module's `router`: smallboat's own
(`predict`: `/v1`), SageMaker's (`sagemaker`: `/ping`, `/invocations`,
`/endpoints/{name}/invocations`), operations (`ops`: `/healthz`, `/readyz`, `/metrics`) and
`admin` (`/admin/reload`).

Every answer about a session is a `Prediction`; every error is `{"error", "detail"}`.
"""
