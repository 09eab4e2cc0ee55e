"""What failover health and /metrics report about GPUs: presence, names and memory."""
from __future__ import annotations

import torch


def gpu_report() -> dict:
    if not torch.cuda.is_available():
        return {"present": False, "devices": []}
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        properties = torch.cuda.get_device_properties(index)
        devices.append({
            "index": index,
            "name": properties.name,
            "uuid": str(getattr(properties, "uuid", index)),
            "memory_total_bytes": total,
            "memory_used_bytes": total - free,
        })
    return {"present": True, "devices": devices}
