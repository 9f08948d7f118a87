"""dagnats.replicas: the replica count chosen from the server's INFO, or asked for."""

from __future__ import annotations

from dagnats.replicas import choose, cluster_size

SINGLE = {"server_name": "a", "jetstream": True}


def cluster_info(servers: int) -> dict[str, object]:
    return {"cluster": "c1", "connect_urls": [f"127.0.0.1:{4222 + n}" for n in range(servers)]}


def test_a_single_server_stays_r1() -> None:
    assert cluster_size(SINGLE) == 1
    assert choose(None, SINGLE).count == 1
    assert not choose(None, SINGLE).explicit


def test_a_cluster_of_three_or_more_gets_r3() -> None:
    for servers in (3, 5):
        chosen = choose(None, cluster_info(servers))
        assert (chosen.count, chosen.explicit) == (3, False)
        assert f"{servers} servers" in chosen.reason


def test_a_cluster_of_two_or_one_hiding_its_servers_stays_r1() -> None:
    assert choose(None, cluster_info(2)).count == 1
    hidden = choose(None, {"cluster": "c1"})  # no_advertise, or a leaf node's own name
    assert hidden.count == 1
    assert "--replicas" in hidden.reason


def test_asked_for_wins_and_may_scale_down() -> None:
    chosen = choose(1, cluster_info(3))
    assert (chosen.count, chosen.explicit) == (1, True)
    assert chosen.limits().scale_down
    assert not choose(None, cluster_info(3)).limits().scale_down


def test_serve_refuses_replicas_without_a_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.test_cli_offline import invoke, one_error_line

    line = one_error_line(invoke("serve", "--data-dir", str(tmp_path), "--replicas", "3"), 2)
    assert "--replicas 3 needs a NATS cluster" in line
    for bad in ("0", "6", "x"):
        result = invoke("serve", "--data-dir", str(tmp_path), "--replicas", bad)
        assert result.exit_code == 2, result.output


def test_serve_passes_replicas_to_the_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dagnats.replicas import REPLICAS_ENV
    from dagnats.server.serve import child_specs

    specs = {s.name: s for s in child_specs([], "nats://a:4222", tmp_path, replicas=3)}
    assert specs["engine"].env[REPLICAS_ENV] == "3"
    assert REPLICAS_ENV not in {k for s in child_specs([], "nats://a:4222", tmp_path)
                                for k in s.env}
