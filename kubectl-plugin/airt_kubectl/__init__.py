"""`kubectl airt`: the user's view of airt ModelDeployments (status, why, plan, logs, infer).

A kubectl plugin, shipped as its own distribution; it imports no airt product and reaches the
cluster only through `kubectl` with the user's kubeconfig, so it works from any machine.
"""
