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
    for info in (cluster_info(2), {"cluster": "c1"}):
        chosen = choose(None, info)
        assert chosen.count == 1
        assert "--replicas" in chosen.reason


def test_asked_for_wins_and_may_scale_down() -> None:
    chosen = choose(1, cluster_info(3))
    assert (chosen.count, chosen.explicit) == (1, True)
    assert chosen.limits().scale_down
    assert not choose(None, cluster_info(3)).limits().scale_down
