"""What a platform team reads on every infrastructure change: `mlfleet review` (inventory, GPU
capacity, cost estimate, RTO/RPO budget, findings, diff against a base, architecture picture)
and `mlfleet drift` (the live platform against the synthesized intent)."""
