"""The baseline: a bare Falcon app that reads the body and answers 204, whatever the route."""
import falcon


def answer_204(req: falcon.Request, resp: falcon.Response, **params: str) -> None:
    req.bounded_stream.read()
    resp.status = falcon.HTTP_204


app = falcon.App()
app.add_sink(answer_204, prefix="/")
