"""kserve 0.21 ModelServer serving a TorchScript model over v2 REST (bench peer; runs in the
bench virtualenv). Usage: kserve_peer.py MODEL_NAME MODEL_PT HTTP_PORT"""
import sys

import kserve
import torch
from kserve import InferOutput, InferRequest, InferResponse

name, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)


class TorchScriptModel(kserve.Model):
    def __init__(self):
        super().__init__(name)
        self.module = torch.jit.load(path).eval()
        self.ready = True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        batch = payload.inputs[0].as_numpy()
        with torch.inference_mode():
            result = self.module(torch.from_numpy(batch)).numpy()
        output = InferOutput(name="OUTPUT__0", shape=list(result.shape), datatype="FP32")
        output.set_data_from_numpy(result, binary_data=payload.inputs[0].parameters is not None
                                   and "binary_data_size" in (payload.inputs[0].parameters or {}))
        return InferResponse(model_name=name, infer_outputs=[output], response_id=payload.id or "bench")


kserve.ModelServer(http_port=port, enable_grpc=False, workers=1, enable_docs_url=False).start([TorchScriptModel()])
