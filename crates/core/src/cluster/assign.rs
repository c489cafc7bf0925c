//! Which worker runs which mapping: a pure function of the live workers, the configured mappings and
//! the current assignments, so the coordinator can recompute it on every change (and after a
//! restart, from what the state database holds) and get the same answer.
//!
//! # Rules
//!
//! - **A connection is the unit of placement.** All mappings of one connection run on one worker,
//!   because the connection's `db_pool_size` is enforced by the single DbWriter that owns its pool
//!   (DESIGN.md invariant 4): two workers would each open a pool, doubling the bound.
//! - **Load is the number of mappings, weighted by capacity.** Each mapping is a poller with its own
//!   API calls, windows and secondary polls, so mappings, not connections, are what a worker spends
//!   its time on; a worker's capacity is a relative weight (capacity 0 drains it).
//! - **Balance.** A connection of size `s` moves from worker `i` to worker `j` only if that strictly
//!   lowers `sum(load^2 / capacity)`, i.e. `s * (1/cap_i + 1/cap_j) < 2 * (load_i/cap_i -
//!   load_j/cap_j)`. With equal capacities this reads `s < load_i - load_j`: at rest, no worker has
//!   more mappings than another by more than the size of its own smallest connection, which is at
//!   most one connection's worth. Moving when `s == load_i - load_j` would only swap the two loads,
//!   so that is not a move.
//! - **Sticky.** A connection stays on the live worker that holds (most of) it unless the balance
//!   rule says move. The result of this function is always at rest, so feeding it back in (a
//!   coordinator restart with the same state) moves nothing.
//! - **Healing.** Connections of dead or drained workers, and new connections, are placed largest
//!   first on the worker they leave least loaded; then the balance rule runs, which is also how a
//!   new worker gets its share.
//!
//! Every tie is broken by name, so the answer never depends on input order.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A live worker as the assignment sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSlot {
    pub name: String,
    /// Relative weight; 0 means the worker gets nothing (drain before removal).
    pub capacity: u32,
}

/// The configured mappings of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionMappings {
    pub connection: String,
    /// Salesforce object API names as the mappings spell them.
    pub objects: Vec<String>,
}

/// One mapping on one worker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment {
    pub connection: String,
    pub object: String,
    pub worker: String,
}

/// The new assignments, sorted by (connection, object). Mappings of a connection nobody can run
/// (no live worker with capacity > 0) are left out. Entries of `current` for unknown workers or
/// mappings are ignored.
pub fn assign(
    workers: &[WorkerSlot],
    connections: &[ConnectionMappings],
    current: &[Assignment],
) -> Vec<Assignment> {
    let caps: BTreeMap<&str, u64> = workers
        .iter()
        .filter(|w| w.capacity > 0)
        .map(|w| (w.name.as_str(), u64::from(w.capacity)))
        .collect();
    if caps.is_empty() {
        return Vec::new();
    }
    let mut objects: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in connections {
        objects
            .entry(c.connection.as_str())
            .or_default()
            .extend(c.objects.iter().map(String::as_str));
    }
    objects.retain(|_, o| !o.is_empty());

    let mut plan = Plan {
        caps,
        sizes: objects.iter().map(|(c, o)| (*c, o.len() as u64)).collect(),
        loads: BTreeMap::new(),
        homes: BTreeMap::new(),
    };
    let mut unplaced = Vec::new();
    for (conn, objs) in &objects {
        match plan.current_home(conn, objs, current) {
            Some(w) => plan.place(conn, w),
            None => unplaced.push(*conn),
        }
    }
    // Largest first: big pieces placed early leave the small ones to even things out.
    unplaced.sort_by(|a, b| plan.sizes[b].cmp(&plan.sizes[a]).then(a.cmp(b)));
    for conn in unplaced {
        let w = plan.least_loaded_after(plan.sizes[conn]);
        plan.place(conn, w);
    }
    while let Some((conn, to)) = plan.best_move() {
        plan.unplace(conn);
        plan.place(conn, to);
    }

    let mut out = Vec::new();
    for (conn, objs) in &objects {
        let worker = plan.homes[conn];
        out.extend(objs.iter().map(|o| Assignment {
            connection: (*conn).to_owned(),
            object: (*o).to_owned(),
            worker: worker.to_owned(),
        }));
    }
    out
}

#[derive(Default)]
struct Load<'a> {
    mappings: u64,
    connections: BTreeSet<&'a str>,
}

struct Plan<'a> {
    caps: BTreeMap<&'a str, u64>,
    sizes: BTreeMap<&'a str, u64>,
    loads: BTreeMap<&'a str, Load<'a>>,
    homes: BTreeMap<&'a str, &'a str>,
}

impl<'a> Plan<'a> {
    /// The live worker holding most of the connection's configured mappings now (a connection can
    /// be split after a config change or an older version of this function); ties go to the name
    /// that sorts first.
    fn current_home(
        &self,
        conn: &str,
        objs: &BTreeSet<&str>,
        current: &'a [Assignment],
    ) -> Option<&'a str> {
        let mut held: BTreeMap<&'a str, usize> = BTreeMap::new();
        for a in current {
            if a.connection == conn
                && objs.contains(a.object.as_str())
                && self.caps.contains_key(a.worker.as_str())
            {
                *held.entry(a.worker.as_str()).or_default() += 1;
            }
        }
        held.into_iter()
            .max_by(|(wa, na), (wb, nb)| na.cmp(nb).then(wb.cmp(wa)))
            .map(|(w, _)| w)
    }

    fn place(&mut self, conn: &'a str, worker: &'a str) {
        let load = self.loads.entry(worker).or_default();
        load.mappings += self.sizes[conn];
        load.connections.insert(conn);
        self.homes.insert(conn, worker);
    }

    fn unplace(&mut self, conn: &'a str) {
        if let Some(w) = self.homes.remove(conn) {
            let load = self.loads.get_mut(w).expect("placed worker has a load");
            load.mappings -= self.sizes[conn];
            load.connections.remove(conn);
        }
    }

    fn mappings(&self, w: &str) -> u64 {
        self.loads.get(w).map_or(0, |l| l.mappings)
    }

    fn connection_count(&self, w: &str) -> usize {
        self.loads.get(w).map_or(0, |l| l.connections.len())
    }

    /// Orders workers by load per unit of capacity, exactly (cross-multiplied, no floats).
    fn cmp_normalized(&self, a: (&str, u64), b: (&str, u64)) -> Ordering {
        let (ca, cb) = (u128::from(self.caps[a.0]), u128::from(self.caps[b.0]));
        (u128::from(a.1) * cb).cmp(&(u128::from(b.1) * ca))
    }

    /// The worker whose normalized load after taking `size` more mappings is lowest; then fewer
    /// connections, then name.
    fn least_loaded_after(&self, size: u64) -> &'a str {
        let mut best: Option<&'a str> = None;
        for &w in self.caps.keys() {
            best = Some(match best {
                None => w,
                Some(b) => {
                    let ord = self
                        .cmp_normalized((w, self.mappings(w) + size), (b, self.mappings(b) + size))
                        .then(self.connection_count(w).cmp(&self.connection_count(b)));
                    if ord == Ordering::Less {
                        w
                    } else {
                        b
                    }
                }
            });
        }
        best.expect("at least one worker with capacity")
    }

    /// `s * (c_i + c_j) < 2 * (l_i * c_j - l_j * c_i)`, the balance rule with both sides multiplied
    /// by `c_i * c_j`; returns the gain (left minus right, scaled) when positive.
    fn gain(&self, from: &str, to: &str, size: u64) -> Option<i128> {
        let (ci, cj) = (i128::from(self.caps[from]), i128::from(self.caps[to]));
        let (li, lj) = (
            i128::from(self.mappings(from)),
            i128::from(self.mappings(to)),
        );
        let s = i128::from(size);
        let g = s * (2 * (li * cj - lj * ci) - s * (ci + cj));
        (g > 0).then_some(g)
    }

    /// The first improving move, scanning heaviest-to-lightest pairs; within the pair, the
    /// connection with the largest gain (then the smaller, then by name). Each move strictly lowers
    /// `sum(load^2 / capacity)` over a finite set of placements, so the loop in [`assign`] ends.
    fn best_move(&self) -> Option<(&'a str, &'a str)> {
        let mut order: Vec<&'a str> = self.caps.keys().copied().collect();
        order.sort_by(|a, b| {
            self.cmp_normalized((a, self.mappings(a)), (b, self.mappings(b)))
                .then(a.cmp(b))
        });
        for &from in order.iter().rev() {
            let Some(load) = self.loads.get(from) else {
                continue;
            };
            for &to in &order {
                if to == from {
                    continue;
                }
                let best = load
                    .connections
                    .iter()
                    .filter_map(|&c| self.gain(from, to, self.sizes[c]).map(|g| (g, c)))
                    .max_by(|(ga, a), (gb, b)| {
                        ga.cmp(gb)
                            .then(self.sizes[b].cmp(&self.sizes[a]))
                            .then(b.cmp(a))
                    });
                if let Some((_, conn)) = best {
                    return Some((conn, to));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
