//! Sharded nodes behind nginx, purges fanned out through Redis Streams (issue
//! 19), against a real redis-server, a real nginx (`hash $request_uri
//! consistent`, `proxy_next_upstream`) and three plughost nodes on loopback
//! (tests/support/cluster.rs). Skipped with a printed reason when redis-server
//! or nginx is missing, a failure under `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::cluster::{
    bus_queue, bus_up, cache_event, node_config, purge_cli, wait_until, within, Cluster, Load,
    NAMES,
};

/// How long a purge may take to reach every node.
const FAN_OUT: Duration = Duration::from_secs(1);

/// How long the tests wait for things the contract puts no bound on.
const SETTLE: Duration = Duration::from_secs(10);

/// How long a node may take to notice Redis left or came back.
const RECONNECT: Duration = Duration::from_secs(15);

/// Which node's app answered (the echo reports its `node = NAME` local_conf).
fn answered_by(r: &support::Reply) -> String {
    r.json()["local_conf"]["node"]
        .as_str()
        .unwrap_or_else(|| panic!("no node in {}", r.text()))
        .to_owned()
}

#[test]
fn a_page_requested_through_nginx_is_cached_on_exactly_one_node() {
    let Some(c) = Cluster::start_cold("") else {
        return;
    };
    let mut per_node = BTreeMap::new();
    let paths: Vec<String> = (0..32).map(|i| format!("/shard/{i}")).collect();
    for path in &paths {
        let miss = c.via("GET", path, &[]);
        assert_eq!(miss.status, 200, "{}", miss.text());
        assert_eq!(miss.header("x-cache"), Some("MISS"), "{path}");
        wait_until(
            &format!("{path} to be stored"),
            Duration::from_secs(10),
            || !c.holders(path).is_empty(),
        );
        let h = c.holder(path);
        assert_eq!(
            answered_by(&miss),
            NAMES[h],
            "{path}: stored by another node"
        );
        // The same URI goes to the same node: a hit, the stored page.
        let hit = c.via("GET", path, &[]);
        assert_eq!(hit.header("x-cache"), Some("HIT"), "{path}");
        assert_eq!(hit.body, miss.body);
        *per_node.entry(h).or_insert(0) += 1;
    }
    // Nothing was stored twice meanwhile, and the URIs are spread.
    for path in &paths {
        c.holder(path);
    }
    assert_eq!(per_node.len(), 3, "32 URIs sharded as {per_node:?}");
}

#[test]
fn a_purge_on_any_node_removes_the_page_wherever_it_lives() {
    let Some(c) = Cluster::start("purge_on = POST\n") else {
        return;
    };
    // A page purge sent to a node that does not hold the page.
    let h = c.store("/p/page", &[]);
    let kept = c.store("/p/other", &[]);
    let other = (h + 1) % 3;
    assert_eq!(
        c.nodes[other].purge("/p/page", &[]),
        0,
        "{} held the page",
        NAMES[other]
    );
    let took = within("the page purge to reach its node", FAN_OUT, || {
        !c.nodes[h].holds("/p/page")
    });
    eprintln!("page purge reached {} in {took:?}", NAMES[h]);
    assert!(c.nodes[kept].holds("/p/other"), "another page went too");
    // The next request is a miss on the same node, which stores it again.
    let again = c.via("GET", "/p/page", &[]);
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert_eq!(answered_by(&again), NAMES[h]);

    // A prefix purge: the page and everything below it, on every node.
    let below: Vec<String> = (0..9).map(|i| format!("/pre/{i}")).collect();
    let mut holders: Vec<usize> = below.iter().map(|p| c.store(p, &[])).collect();
    holders.sort();
    holders.dedup();
    assert!(holders.len() > 1, "all of /pre/ on one node: {holders:?}");
    let beside = c.store("/prefix", &[]);
    let from = (0..3).find(|i| !holders.contains(i)).unwrap_or(0);
    c.nodes[from].purge("/pre", &[("X-Purge-Prefix", "1")]);
    within("the prefix purge to reach every node", FAN_OUT, || {
        below.iter().all(|p| c.holders(p).is_empty())
    });
    assert!(
        c.nodes[beside].holds("/prefix"),
        "/prefix is not below /pre"
    );

    // A tag purge, sent to a node that holds none of the tagged pages.
    let red = [("X-Echo-Header", "Surrogate-Key: red")];
    let blue = [("X-Echo-Header", "Surrogate-Key: blue")];
    let r = c.store("/t/red", &red);
    let b = c.store("/t/blue", &blue);
    let from = (r + 1) % 3;
    let purged = c.nodes[from].purge("/", &[("Surrogate-Key", "red")]);
    assert_eq!(purged, 0, "{} held a red page", NAMES[from]);
    within("the tag purge to reach its node", FAN_OUT, || {
        !c.nodes[r].holds("/t/red")
    });
    assert!(c.nodes[b].holds("/t/blue"), "an untagged page went too");

    // purge_on: a POST answered by one node purges the page on the node holding it.
    let h = c.store("/w/item", &[]);
    let other = (h + 2) % 3;
    let r = c.nodes[other].request("POST", "/w/item", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    within("the write's purge to reach its node", FAN_OUT, || {
        !c.nodes[h].holds("/w/item")
    });
}

#[test]
fn a_soft_purge_on_any_node_refreshes_the_page_where_it_lives() {
    // The old file stays in place until its refresh lands (never missing).
    let Some(c) = Cluster::start("") else { return };
    let h = c.store("/s/page", &[]);
    let old = std::fs::read(c.nodes[h].page_file("/s/page")).unwrap();
    c.nodes[(h + 1) % 3].purge("/s/page", &[("X-Purge-Soft", "1")]);
    wait_until(
        "the soft purge to refresh the page",
        Duration::from_secs(5),
        || {
            let now = std::fs::read(c.nodes[h].page_file("/s/page")).unwrap_or_else(|e| {
                panic!(
                    "the soft-purged page went missing on {} ({e}):\n{}",
                    NAMES[h],
                    c.nodes[h].log()
                )
            });
            now != old
        },
    );
    let r = c.via("GET", "/s/page", &[]);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(answered_by(&r), NAMES[h]);
}

#[test]
fn the_cli_publishes_purges_to_the_bus_without_being_a_node() {
    let Some(c) = Cluster::start("") else { return };
    // A deploy script's config: the same bus, a tree no node serves.
    let ops = c.root.path().join("ops");
    std::fs::create_dir_all(ops.join("cache")).unwrap();
    std::fs::write(
        ops.join("deploy.ini"),
        node_config("deployer", &c.redis.url(), ""),
    )
    .unwrap();
    let h = c.store("/cli/page", &[]);
    let kept = c.store("/cli/kept", &[]);
    let g = c.store("/cli/green", &[("X-Echo-Header", "Cache-Tag: green")]);

    let out = purge_cli(&ops, &["--bus", "/cli/page"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    within("the CLI's page purge to reach its node", FAN_OUT, || {
        !c.nodes[h].holds("/cli/page")
    });

    let out = purge_cli(&ops, &["--bus", "--tag", "green"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    within("the CLI's tag purge to reach its node", FAN_OUT, || {
        !c.nodes[g].holds("/cli/green")
    });
    assert!(c.nodes[kept].holds("/cli/kept"));
}

#[test]
fn a_restarted_node_catches_up_before_it_listens() {
    let Some(mut c) = Cluster::start("") else {
        return;
    };
    let gone = c.path_on(0, "/gone", &[]);
    let kept = c.path_on(0, "/kept", &[]);
    let tagged = c.path_on(0, "/tagged", &[("X-Echo-Header", "Surrogate-Key: late")]);
    let elsewhere = c.path_on(1, "/elsewhere", &[]);
    // The start's handshake gave node-a a position on the stream.
    assert!(c.nodes[0].position_file().is_file());

    c.nodes[0].terminate();
    c.nodes[1].purge(&gone, &[]);
    c.nodes[2].purge("/", &[("Surrogate-Key", "late")]);
    c.nodes[2].purge("/unrelated", &[("X-Purge-Prefix", "1")]);
    assert!(
        c.nodes[0].holds(&gone) && c.nodes[0].holds(&tagged),
        "a stopped node's tree changed"
    );
    // Published by the nodes' publisher threads, after the PURGE answers.
    wait_until("the three purges on the stream", SETTLE, || {
        c.redis.command(&["XLEN", "plughost:purge"]).int() >= 4
    });

    // Start returns once `listening on` was printed: the purges are applied by then.
    c.nodes[0].start();
    assert!(
        !c.nodes[0].holds(&gone),
        "{gone} was still there when node-a listened\n{}",
        c.nodes[0].log()
    );
    assert!(
        !c.nodes[0].holds(&tagged),
        "the tag purge missed while down was not applied"
    );
    assert!(c.nodes[0].holds(&kept), "catching up removed {kept} too");
    assert!(c.nodes[1].holds(&elsewhere));
    // nginx sends the page to node-a again, a miss there.
    let r = c.via("GET", &gone, &[]);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(answered_by(&r), "node-a");
    let r = c.via("GET", &kept, &[]);
    assert_eq!(r.header("x-cache"), Some("HIT"));
}

#[test]
fn killing_a_node_under_load_fails_no_request() {
    let Some(mut c) = Cluster::start_cold("") else {
        return;
    };
    let paths: Vec<String> = (0..12).map(|i| format!("/load/{i}")).collect();
    let mut on = [0usize; 3];
    for p in &paths {
        on[c.store(p, &[])] += 1;
    }
    let victim = (0..3).max_by_key(|&i| on[i]).unwrap();
    let load = Load::start(c.nginx.port, 4, &paths);
    load.wait_for(200);
    c.nodes[victim].kill();
    // Well past nginx noticing (and retrying the in-flight requests).
    load.wait_for(600);
    let report = load.stop();
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed after killing {}: {:#?}\n{}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        NAMES[victim],
        &report.failures[..report.failures.len().min(10)],
        c.logs()
    );
    // The victim's pages are served (and stored) by the others now.
    for p in &paths {
        let r = c.via("GET", p, &[]);
        assert_eq!(r.status, 200);
        assert_ne!(answered_by(&r), NAMES[victim]);
    }
}

#[test]
fn redis_restarted_under_load_fails_no_request_and_loses_no_purge() {
    let Some(mut c) = Cluster::start("") else {
        return;
    };
    let paths: Vec<String> = (0..9).map(|i| format!("/busy/{i}")).collect();
    for p in &paths {
        c.store(p, &[]);
    }
    let target = "/outage/page";
    let h = c.store(target, &[]);
    let x = (h + 1) % 3;
    let load = Load::start(c.nginx.port, 4, &paths);
    load.wait_for(200);

    c.redis.stop();
    load.wait_for(200);
    // Applied locally at once (node x holds nothing), queued for the bus.
    let r = c.nodes[x].request("PURGE", target, &[]);
    assert_eq!(
        r.status,
        200,
        "a PURGE failed with Redis down: {}",
        r.text()
    );
    load.wait_for(200);
    assert!(
        c.nodes[h].holds(target),
        "the page went without a bus: the test proves nothing"
    );

    c.redis.restart();
    let took = wait_until(
        "the purge queued during the outage to reach its node",
        RECONNECT,
        || !c.nodes[h].holds(target),
    );
    eprintln!("queued purge applied {took:?} after Redis came back");
    load.wait_for(200);
    let report = load.stop();
    assert!(
        report.failures.is_empty(),
        "{} requests failed around the Redis restart: {:#?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)]
    );
    for p in &paths {
        c.holder(p);
    }
    // One warning per node for the outage, however many purges and reads failed.
    for n in &c.nodes {
        let warnings = n.log().matches("purge bus is unreachable").count();
        assert_eq!(warnings, 1, "{}:\n{}", n.name, n.log());
    }
}

#[test]
fn metrics_show_the_bus_state_and_queue() {
    let Some(mut c) = Cluster::start("") else {
        return;
    };
    for n in &c.nodes {
        wait_until(&format!("{} to show the bus up", n.name), RECONNECT, || {
            bus_up(&n.metrics()) == Some(1.0)
        });
    }
    let h = c.store("/m/page", &[]);
    let from = (h + 1) % 3;
    let applied = cache_event(&c.nodes[h].metrics(), "bus.applied");
    c.nodes[from].purge("/m/page", &[]);
    within("the purge to be applied", FAN_OUT, || {
        !c.nodes[h].holds("/m/page")
    });
    // The publisher counts an entry once Redis took it, maybe after the
    // holder applied it.
    wait_until("bus.published and an empty queue", SETTLE, || {
        let text = c.nodes[from].metrics();
        cache_event(&text, "bus.published") >= 1.0 && bus_queue(&text) == Some(0.0)
    });
    wait_until("bus.applied on the holder", SETTLE, || {
        cache_event(&c.nodes[h].metrics(), "bus.applied") >= applied + 1.0
    });

    c.redis.stop();
    for n in &c.nodes {
        wait_until(
            &format!("{} to show the bus down", n.name),
            RECONNECT,
            || bus_up(&n.metrics()) == Some(0.0),
        );
    }
    c.nodes[from].purge("/m/other", &[]);
    let text = c.nodes[from].metrics();
    assert_eq!(bus_queue(&text), Some(1.0), "{text}");

    c.redis.restart();
    for n in &c.nodes {
        wait_until(
            &format!("{} to show the bus up again", n.name),
            RECONNECT,
            || bus_up(&n.metrics()) == Some(1.0),
        );
    }
    wait_until("the queue to drain", RECONNECT, || {
        bus_queue(&c.nodes[from].metrics()) == Some(0.0)
    });
}

#[test]
fn redis_keeps_the_stream_across_a_restart() {
    // The premise of the no-lost-purge test: the harness's Redis is durable.
    let Some(bin) = support::redis::binary() else {
        return support::skip_unless_ci("redis-server is not installed");
    };
    let dir = support::tempdir();
    let mut redis = support::redis::Redis::start(&bin, dir.path());
    let id = redis.command(&["XADD", "s", "*", "path", "/a"]).text();
    redis.stop();
    assert!(!redis.ping(), "still answering after stop");
    redis.restart();
    let entries = redis.command(&["XRANGE", "s", "-", "+"]);
    assert_eq!(entries.array().len(), 1, "{entries:?}");
    assert_eq!(entries.array()[0].array()[0].text(), id);
}

/// Stop node-a (after it applied one entry, or before any was published),
/// publish far more purges than the stream keeps, restart it: it must wipe its
/// tree before it listens, since it cannot know what it missed.
fn trimmed_past(applied_one_first: bool) {
    // 100 is the least purge_stream_max main accepts.
    let Some(mut c) = Cluster::start_cold("purge_stream_max = 100\n") else {
        return;
    };
    let a = c.path_on(0, "/a", &[]);
    let b = c.path_on(0, "/b", &[]);
    let elsewhere = c.path_on(1, "/elsewhere", &[]);
    if applied_one_first {
        c.handshake();
    }
    assert!(c.nodes[0].position_file().is_file());
    c.nodes[0].terminate();
    // Far more purges than the stream keeps (trimming is approximate: Redis
    // drops whole nodes of 100 entries), published by node-b's config.
    let junk: Vec<String> = (0..500).map(|i| format!("/junk/{i}")).collect();
    let mut args = vec!["--bus"];
    args.extend(junk.iter().map(String::as_str));
    let out = purge_cli(&c.nodes[1].dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len = c.redis.command(&["XLEN", "plughost:purge"]).int();
    assert!(len < 500, "the stream was not trimmed: {len} entries");

    let position = std::fs::read_to_string(c.nodes[0].position_file()).unwrap();
    let info = c.redis.command(&["XINFO", "STREAM", "plughost:purge"]);
    let field = |name: &str| {
        let pairs = info.array().chunks(2);
        let value = pairs.into_iter().find(|p| p[0].text() == name).unwrap()[1].clone();
        match value {
            support::redis::Resp::Array(_) => value.array()[0].text(),
            other => other.text(),
        }
    };
    let stream = format!(
        "node-a's position {:?}; the stream's first entry {}, max-deleted-entry-id {}",
        position.trim(),
        field("first-entry"),
        field("max-deleted-entry-id"),
    );
    c.nodes[0].start();
    assert!(
        !c.nodes[0].holds(&a) && !c.nodes[0].holds(&b),
        "node-a kept pages it may have missed purges of ({stream})"
    );
    c.nodes[0].host().wait_log("wiping", Duration::from_secs(2));
    assert!(
        c.nodes[0].log().to_lowercase().contains("wip"),
        "the wipe was not logged:\n{}",
        c.nodes[0].log()
    );
    assert!(c.nodes[1].holds(&elsewhere), "another node wiped too");
    // The wiped node serves again, a miss and then a hit.
    assert_eq!(c.via("GET", &a, &[]).header("x-cache"), Some("MISS"));
}

#[test]
fn a_node_whose_position_was_trimmed_away_wipes_its_tree() {
    trimmed_past(true);
}

#[test]
fn a_node_that_applied_nothing_before_the_stream_was_trimmed_wipes_its_tree() {
    // Its position is the stream's start (the stream was empty when it
    // started), and the purges it never saw are gone all the same.
    trimmed_past(false);
}
