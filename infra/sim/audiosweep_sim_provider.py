"""Ray's fake multi-node provider, with lost machines gone from its list as on a cloud.

The fake provider (Ray 2.60) keeps every worker node it started in its list until the
autoscaler terminates it, and tags it `uninitialized` for good (its launch tags overwrite the
`up-to-date` status it sets). The v1 autoscaler counts such a node as still being set up, so
when the node's processes die it neither declares the node lost nor launches a replacement:
work that needs the node waits forever. A cloud provider lists only instances that exist, so
here a node whose raylet has exited is dropped from the list (its remaining processes are
stopped), and the autoscaler starts a new one when work asks for it.

infra/local/up.sh puts this folder on the head's PYTHONPATH; infra/sim/cluster.yaml names the
class as an external provider.
"""

from __future__ import annotations

from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class SimNodeProvider(FakeMultiNodeProvider):
    def non_terminated_nodes(self, tag_filters):
        with self.lock:
            for node_id, entry in list(self._nodes.items()):
                node = entry.get("node")  # the head has none: it is not this provider's
                if node is not None and _raylet_exited(node):
                    del self._nodes[node_id]
                    node.kill_all_processes(check_alive=False, allow_graceful=False)
        return super().non_terminated_nodes(tag_filters)


def _raylet_exited(node) -> bool:
    return any(kind == ray_constants.PROCESS_TYPE_RAYLET for kind, _ in node.dead_processes())
