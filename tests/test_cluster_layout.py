"""The pure parts of the multi-broker work: cluster layout, topic durability, fault counts, soak decisions."""

from __future__ import annotations

import pytest

from infra.kafka.launcher import ClusterLayout, KafkaError, LocalKafka, LocalKafkaCluster, NodeRole
from streams.adapters.kafka_admin import Durability
from streams.config import KafkaSettings, kafka_settings
from tests.faults import Counts


def test_three_nodes_get_interleaved_loopback_ports_and_a_static_quorum() -> None:
    lay = ClusterLayout.from_settings(KafkaSettings(nodes=3))
    assert lay.ports == ((9092, 9093), (9094, 9095), (9096, 9097))
    assert lay.bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert lay.voters == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"


def test_overlapping_ports_and_odd_sizes_are_refused_with_what_to_do() -> None:
    with pytest.raises(KafkaError, match="controller-port"):
        ClusterLayout.from_settings(KafkaSettings(nodes=3, port=9092, controller_port=9094))
    with pytest.raises(KafkaError, match="between 1 and"):
        ClusterLayout.from_settings(KafkaSettings(nodes=0))


def test_node_properties_follow_the_cluster_size(tmp_path) -> None:
    single = LocalKafka(KafkaSettings(), tmp_path / "one").properties()
    assert single["default.replication.factor"] == "1" and single["min.insync.replicas"] == "1"
    assert "controller.quorum.bootstrap.servers" in single and "controller.quorum.voters" not in single
    cluster = LocalKafkaCluster(KafkaSettings(nodes=3), tmp_path / "three")
    props = [n.properties() for n in cluster.nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in props} == {cluster.layout.voters}
    assert all(p["default.replication.factor"] == "3" and p["min.insync.replicas"] == "2" for p in props)
    assert all(p["offsets.topic.replication.factor"] == "3" for p in props)
    assert [n.state_dir.name for n in cluster.nodes] == ["node-1", "node-2", "node-3"]
    assert NodeRole(cluster_size=2).replication == 2 and NodeRole(cluster_size=2).min_isr == 1


def test_a_cluster_state_folder_is_found_again_without_nodes(tmp_path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "cluster.json").write_text('{"cluster_id": "x", "nodes": 3, "ports": []}')
    assert len(LocalKafkaCluster(KafkaSettings(), tmp_path / "k").nodes) == 3  # stop/status without --nodes
    with pytest.raises(KafkaError, match="--nodes 3"):
        LocalKafkaCluster(KafkaSettings(nodes=2), tmp_path / "k")


def test_config_nodes_give_the_bootstrap_of_every_node(monkeypatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert kafka_settings({}).bootstrap_servers == "127.0.0.1:9092"
    assert kafka_settings({"kafka": {"nodes": 3}}).bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert kafka_settings({"kafka": {"nodes": 3, "bootstrap_servers": "b:1"}}).bootstrap_servers == "b:1"


def test_durability_by_broker_count() -> None:
    assert [Durability.for_brokers(n) for n in (1, 2, 3, 5)] == [
        Durability(1, 1), Durability(2, 1), Durability(3, 2), Durability(3, 2)]
    assert Durability(3, 2).topic_configs() == {"min.insync.replicas": "2"}


def test_fault_counts_against_the_reference() -> None:
    k = lambda w: (w, "m", "1", "inputs")  # noqa: E731
    ref = {k("a"): [500], k("b"): [500]}
    same = Counts.compare(1000, ref, {k("a"): [500], k("b"): [500, 500]}, ["x"], ["x"], 2)
    assert (same.events_lost, same.events_double, same.windows_differing, same.windows_rejudged) == (0, 0, 0, 1)
    assert same.alerts_resent == 1 and same.alerts_duplicated == same.alerts_missing == 0
    lost = Counts.compare(1000, ref, {k("a"): [250]}, ["x", "y"], ["x", "z"], 2)
    assert (lost.events_lost, lost.windows_differing, lost.alerts_duplicated, lost.alerts_missing) == (750, 2, 1, 1)


def test_soak_decisions() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from soak import loopback_only, sustained

    assert sustained(1000, 990, 200) and not sustained(1000, 900, 0) and not sustained(1000, 1000, 1500)
    assert loopback_only("127.0.0.1:9092,localhost:9094") and not loopback_only("10.0.0.2:9092")


def _stand_in_nodes(tmp_path, ignores_sigterm: tuple[bool, ...]):
    """A cluster whose nodes are stand-in processes with a broker's command line; those that ignore SIGTERM behave
    like a node whose controlled shutdown no controller approves (it never ends by itself)."""
    import subprocess
    import sys

    cluster = LocalKafkaCluster(KafkaSettings(nodes=len(ignores_sigterm)), tmp_path / "cluster")
    code = ("import signal, sys, time\n"
            "if sys.argv[3] == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('up', flush=True)\n"
            "time.sleep(120)\n")
    procs = []
    for node, ignore in zip(cluster.nodes, ignores_sigterm):
        node.state_dir.mkdir(parents=True)
        p = subprocess.Popen([sys.executable, "-c", code, "kafka.Kafka", str(node.properties_file),
                              "ignore" if ignore else "stop"], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "up\n"  # its SIGTERM handling is in place
        node.pid_file.write_text(str(p.pid))
        node._proc = p
        procs.append(p)
    return cluster, procs


@pytest.mark.parametrize("ignores", [(False, False, True), (False, True), (False, False, True, True)])
def test_a_node_left_without_its_quorum_is_killed_and_reported_not_an_error(tmp_path, monkeypatch, ignores) -> None:
    """3 nodes, one stuck; 2 nodes, one stuck; 4 nodes, two stuck: once the nodes still running are no majority of
    the voters, the stuck ones are killed and reported."""
    import infra.kafka.launcher as launcher

    monkeypatch.setattr(launcher, "QUORUM_GRACE_S", 0.5)
    cluster, procs = _stand_in_nodes(tmp_path, ignores)
    try:
        result = cluster.stop_detailed(timeout_s=60.0)
        stuck = tuple(i + 1 for i, ignore in enumerate(ignores) if ignore)
        assert result.was_running and result.killed_without_quorum == stuck
        assert all(p.wait(10) == -9 for p, ignore in zip(procs, ignores) if ignore)  # SIGKILLed, not left running
        assert not any(n.pid_file.exists() for n in cluster.nodes)
    finally:
        for p in procs:
            p.kill()


def test_a_node_that_does_not_stop_while_the_quorum_stands_is_an_error(tmp_path) -> None:
    cluster, procs = _stand_in_nodes(tmp_path, (False, True, True))
    try:
        with pytest.raises(KafkaError, match="did not shut down within 1 s and was killed"):
            cluster.stop_detailed(timeout_s=1.0)
        assert all(p.wait(10) is not None for p in procs)
    finally:
        for p in procs:
            p.kill()
