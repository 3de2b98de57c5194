"""The prediction API's routers, one per protocol family, each module's `router`: smallboat's own
(`predict`: `/v1`), SageMaker's (`sagemaker`: `/ping`, `/invocations`,
`/endpoints/{name}/invocations`), KServe v1 (`kserve`: `/v1/models/{name}`, and the `instances`
body SageMaker's routes share), the Open Inference Protocol (`oip`: `/v2`), operations (`ops`:
`/healthz`, `/readyz`, `/metrics`) and `admin` (`/admin/reload`).

smallboat's own answers about a session are `Prediction`s and its errors `{"error", "detail"}`;
the other protocols answer, and fail, in their own shapes.
"""
