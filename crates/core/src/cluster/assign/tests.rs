use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn workers(spec: &[(&str, u32)]) -> Vec<WorkerSlot> {
    spec.iter()
        .map(|(n, c)| WorkerSlot {
            name: (*n).into(),
            capacity: *c,
        })
        .collect()
}

fn equal(names: &[&str]) -> Vec<WorkerSlot> {
    workers(&names.iter().map(|n| (*n, 1)).collect::<Vec<_>>())
}

/// Connection `c<i>` gets `sizes[i]` mappings `o0..`.
fn conns(sizes: &[usize]) -> Vec<ConnectionMappings> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, n)| ConnectionMappings {
            connection: format!("c{i}"),
            objects: (0..*n).map(|o| format!("O{o}")).collect(),
        })
        .collect()
}

/// connection -> worker, checking on the way that no connection is split.
fn homes(a: &[Assignment]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for x in a {
        let prev = out.insert(x.connection.clone(), x.worker.clone());
        assert!(
            prev.is_none() || prev.as_ref() == Some(&x.worker),
            "connection {} split across workers",
            x.connection
        );
    }
    out
}

fn loads(a: &[Assignment], ws: &[WorkerSlot]) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = ws
        .iter()
        .filter(|w| w.capacity > 0)
        .map(|w| (w.name.clone(), 0))
        .collect();
    for x in a {
        *out.get_mut(&x.worker).expect("assigned to a live worker") += 1;
    }
    out
}

fn moved(before: &[Assignment], after: &[Assignment]) -> BTreeSet<String> {
    let (b, a) = (homes(before), homes(after));
    a.iter()
        .filter(|(c, w)| b.get(*c).is_some_and(|x| x != *w))
        .map(|(c, _)| c.clone())
        .collect()
}

/// Everything the rules promise about one result.
fn check(ws: &[WorkerSlot], cs: &[ConnectionMappings], current: &[Assignment]) -> Vec<Assignment> {
    let out = assign(ws, cs, current);
    // Every configured mapping exactly once, on a live worker with capacity.
    let want: BTreeSet<(String, String)> = cs
        .iter()
        .flat_map(|c| c.objects.iter().map(|o| (c.connection.clone(), o.clone())))
        .collect();
    let got: Vec<(String, String)> = out
        .iter()
        .map(|a| (a.connection.clone(), a.object.clone()))
        .collect();
    if ws.iter().any(|w| w.capacity > 0) {
        assert_eq!(got.len(), want.len(), "each mapping exactly once");
        assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want);
    } else {
        assert!(out.is_empty());
    }
    let mut sorted = out.clone();
    sorted.sort();
    assert_eq!(out, sorted, "sorted by (connection, object)");
    let _ = loads(&out, ws);
    // At rest: no improving move left, in the equal-capacity reading `s >= load_i - load_j`.
    let caps: BTreeMap<&str, i64> = ws
        .iter()
        .filter(|w| w.capacity > 0)
        .map(|w| (w.name.as_str(), i64::from(w.capacity)))
        .collect();
    let l = loads(&out, ws);
    let size: BTreeMap<&str, i64> = cs
        .iter()
        .map(|c| (c.connection.as_str(), c.objects.len() as i64))
        .collect();
    for (conn, from) in homes(&out) {
        for (to, cj) in &caps {
            if *to == from {
                continue;
            }
            let ci = caps[from.as_str()];
            let (li, lj) = (l[&from] as i64, l[*to] as i64);
            let s = size[conn.as_str()];
            assert!(
                s * (ci + cj) >= 2 * (li * cj - lj * ci),
                "moving {conn} ({s}) from {from} ({li}) to {to} ({lj}) would improve balance"
            );
        }
    }
    // Restart with the same state: nothing moves.
    assert_eq!(assign(ws, cs, &out), out, "not a fixed point");
    out
}

#[test]
fn three_workers_twelve_mappings_four_connections() {
    let ws = equal(&["w1", "w2", "w3"]);
    let cs = conns(&[3, 3, 3, 3]);
    let out = check(&ws, &cs, &[]);
    assert_eq!(out.len(), 12);
    let mut l: Vec<usize> = loads(&out, &ws).into_values().collect();
    l.sort();
    assert_eq!(l, vec![3, 3, 6], "one connection's worth apart at most");
    let per_worker: BTreeMap<String, usize> =
        homes(&out).into_values().fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w).or_default() += 1;
            m
        });
    assert_eq!(per_worker.len(), 3, "every worker gets a connection");
}

#[test]
fn restart_with_same_state_moves_nothing() {
    let ws = equal(&["w1", "w2", "w3"]);
    let cs = conns(&[3, 3, 3, 3]);
    let first = check(&ws, &cs, &[]);
    // Input order does not matter either.
    let mut ws_rev = ws.clone();
    ws_rev.reverse();
    let mut cs_rev = cs.clone();
    cs_rev.reverse();
    let mut current_rev = first.clone();
    current_rev.reverse();
    assert_eq!(assign(&ws_rev, &cs_rev, &current_rev), first);
    assert_eq!(assign(&ws_rev, &cs_rev, &[]), first);
}

#[test]
fn a_new_worker_gets_a_fair_share_with_one_move() {
    let cs = conns(&[3, 3, 3, 3]);
    let before = check(&equal(&["w1", "w2", "w3"]), &cs, &[]);
    let ws = equal(&["w1", "w2", "w3", "w4"]);
    let after = check(&ws, &cs, &before);
    assert!(loads(&after, &ws).values().all(|l| *l == 3));
    assert_eq!(moved(&before, &after).len(), 1, "only the surplus moves");
}

#[test]
fn a_dead_workers_connections_move_and_nothing_else_does() {
    let cs = conns(&[3, 3, 3, 3]);
    let before = check(&equal(&["w1", "w2", "w3"]), &cs, &[]);
    let dead = "w2";
    let ws = equal(&["w1", "w3"]);
    let after = check(&ws, &cs, &before);
    let (b, a) = (homes(&before), homes(&after));
    for (conn, w) in &b {
        if w != dead {
            assert_eq!(&a[conn], w, "{conn} was on a healthy worker");
        } else {
            assert_ne!(&a[conn], dead);
        }
    }
    assert!(loads(&after, &ws).values().all(|l| *l == 6));
}

#[test]
fn removing_the_only_worker_leaves_nothing_assigned_and_it_heals() {
    let cs = conns(&[2, 1]);
    let before = check(&equal(&["w1"]), &cs, &[]);
    assert!(check(&[], &cs, &before).is_empty());
    let after = check(&equal(&["w9"]), &cs, &before);
    assert!(after.iter().all(|a| a.worker == "w9"));
}

#[test]
fn uneven_connections_balance_by_mapping_count() {
    // One big connection and ten single-mapping ones: the big one sits alone and the small ones
    // share the rest, instead of counting connections.
    let ws = equal(&["a", "b", "c"]);
    let mut sizes = vec![10];
    sizes.extend([1; 10]);
    let out = check(&ws, &conns(&sizes), &[]);
    let l = loads(&out, &ws);
    let big = homes(&out)["c0"].clone();
    assert_eq!(l[&big], 10);
    let mut rest: Vec<usize> = l
        .iter()
        .filter(|(w, _)| **w != big)
        .map(|(_, n)| *n)
        .collect();
    rest.sort();
    assert_eq!(rest, vec![5, 5]);
}

#[test]
fn a_new_worker_takes_small_connections_from_a_crowded_one() {
    let cs = {
        let mut sizes = vec![10];
        sizes.extend([1; 10]);
        conns(&sizes)
    };
    // All ten small connections start on "a", the big one on "b".
    let current: Vec<Assignment> = cs
        .iter()
        .flat_map(|c| {
            let w = if c.connection == "c0" { "b" } else { "a" };
            c.objects.iter().map(move |o| Assignment {
                connection: c.connection.clone(),
                object: o.clone(),
                worker: w.into(),
            })
        })
        .collect();
    let ws = equal(&["a", "b", "c"]);
    let out = check(&ws, &cs, &current);
    let l = loads(&out, &ws);
    assert_eq!((l["a"], l["b"], l["c"]), (5, 10, 5));
    assert_eq!(moved(&current, &out).len(), 5);
}

#[test]
fn capacity_is_a_weight_and_zero_drains() {
    let cs = conns(&[1; 9]);
    let ws = workers(&[("big", 2), ("small", 1)]);
    let out = check(&ws, &cs, &[]);
    let l = loads(&out, &ws);
    assert_eq!((l["big"], l["small"]), (6, 3));

    let drain = workers(&[("big", 0), ("small", 1)]);
    let drained = check(&drain, &cs, &out);
    assert!(drained.iter().all(|a| a.worker == "small"));
}

#[test]
fn a_split_connection_is_gathered_on_the_worker_holding_most_of_it() {
    let ws = equal(&["w1", "w2"]);
    let cs = conns(&[3, 3]);
    let mk = |c: &str, o: &str, w: &str| Assignment {
        connection: c.into(),
        object: o.into(),
        worker: w.into(),
    };
    let current = vec![
        mk("c0", "O0", "w1"),
        mk("c0", "O1", "w2"),
        mk("c0", "O2", "w2"),
        mk("c1", "O0", "w1"),
        mk("c1", "O1", "w1"),
    ];
    let out = check(&ws, &cs, &current);
    let h = homes(&out);
    assert_eq!((h["c0"].as_str(), h["c1"].as_str()), ("w2", "w1"));
}

#[test]
fn a_new_mapping_joins_its_connections_worker() {
    let ws = equal(&["w1", "w2"]);
    let before = check(&ws, &conns(&[3, 3]), &[]);
    let after = check(&ws, &conns(&[4, 3]), &before);
    assert!(moved(&before, &after).is_empty());
    let h = homes(&before);
    assert!(after
        .iter()
        .filter(|a| a.connection == "c0")
        .all(|a| a.worker == h["c0"]));
}

#[test]
fn unknown_workers_and_mappings_in_current_are_ignored() {
    let ws = equal(&["w1"]);
    let cs = conns(&[1]);
    let current = vec![
        Assignment {
            connection: "gone".into(),
            object: "Account".into(),
            worker: "w1".into(),
        },
        Assignment {
            connection: "c0".into(),
            object: "Removed".into(),
            worker: "ghost".into(),
        },
    ];
    let out = check(&ws, &cs, &current);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].worker, "w1");
}

#[test]
fn empty_connections_and_duplicate_objects() {
    let ws = equal(&["w1", "w2"]);
    let cs = vec![
        ConnectionMappings {
            connection: "empty".into(),
            objects: vec![],
        },
        ConnectionMappings {
            connection: "dup".into(),
            objects: vec!["Account".into(), "Account".into()],
        },
    ];
    let out = assign(&ws, &cs, &[]);
    assert_eq!(out.len(), 1);
}

/// Small deterministic generator: the property test must not need a `rand` dependency and must
/// fail the same way every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_clusters_keep_every_rule_through_churn() {
    let mut rng = Lcg(7);
    for _ in 0..300 {
        let n_conns = 1 + rng.below(8) as usize;
        let sizes: Vec<usize> = (0..n_conns).map(|_| 1 + rng.below(6) as usize).collect();
        let cs = conns(&sizes);
        let n_workers = 1 + rng.below(5);
        let mut ws: Vec<WorkerSlot> = (0..n_workers)
            .map(|i| WorkerSlot {
                name: format!("w{i}"),
                capacity: 1 + rng.below(3) as u32,
            })
            .collect();
        let mut current = check(&ws, &cs, &[]);
        for step in 0..4 {
            // Remove one, add one, or change nothing.
            match rng.below(3) {
                0 if ws.len() > 1 => {
                    let i = rng.below(ws.len() as u64) as usize;
                    let gone = ws.remove(i).name;
                    let next = check(&ws, &cs, &current);
                    // Only the dead worker's connections, plus what the balance rule asks for.
                    let lost: BTreeSet<String> = homes(&current)
                        .into_iter()
                        .filter(|(_, w)| *w == gone)
                        .map(|(c, _)| c)
                        .collect();
                    assert!(lost.iter().all(|c| homes(&next)[c] != gone));
                    current = next;
                }
                1 => {
                    ws.push(WorkerSlot {
                        name: format!("n{step}"),
                        capacity: 1,
                    });
                    current = check(&ws, &cs, &current);
                }
                _ => {
                    let next = check(&ws, &cs, &current);
                    assert_eq!(next, current);
                }
            }
        }
    }
}

#[test]
fn equal_capacity_workers_stay_within_one_connection() {
    let mut rng = Lcg(11);
    for _ in 0..300 {
        let sizes: Vec<usize> = (0..1 + rng.below(10))
            .map(|_| 1 + rng.below(5) as usize)
            .collect();
        let largest = *sizes.iter().max().unwrap();
        let names: Vec<String> = (0..1 + rng.below(4)).map(|i| format!("w{i}")).collect();
        let ws = equal(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let out = check(&ws, &conns(&sizes), &[]);
        let l = loads(&out, &ws);
        let (max, min) = (l.values().max().unwrap(), l.values().min().unwrap());
        assert!(max - min <= largest, "{l:?} with sizes {sizes:?}");
    }
}
