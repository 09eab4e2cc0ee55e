"""Triton itself (the tritonserver binary bundled by PyTriton 0.7) serving a TorchScript model
through its Python backend (bench peer; runs in the bench virtualenv).
Usage: pytriton_peer.py MODEL_NAME MODEL_PT HTTP_PORT GRPC_PORT METRICS_PORT QUEUE_DELAY_US|off WORKSPACE"""
import signal
import sys

import numpy as np
import torch
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

name, path, http_port, grpc_port, metrics_port, delay, workspace = sys.argv[1:8]
torch.set_num_threads(1)
module = torch.jit.load(path).eval()


@batch
def infer(INPUT__0):
    with torch.inference_mode():
        return {"OUTPUT__0": module(torch.from_numpy(INPUT__0)).numpy()}


batching = delay != "off"
config = ModelConfig(max_batch_size=64 if batching else 1,
                     batcher=DynamicBatcher(max_queue_delay_microseconds=int(delay)) if batching else None)
triton = Triton(config=TritonConfig(http_port=int(http_port), grpc_port=int(grpc_port),
                                    metrics_port=int(metrics_port)), workspace=workspace)
signal.signal(signal.SIGTERM, lambda *_: triton.stop())
with triton:
    triton.bind(model_name=name, infer_func=infer, config=config, strict=False,
                inputs=[Tensor(name="INPUT__0", dtype=np.float32, shape=(64,))],
                outputs=[Tensor(name="OUTPUT__0", dtype=np.float32, shape=(10,))])
    triton.serve()
