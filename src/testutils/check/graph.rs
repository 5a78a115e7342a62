//! Directed graphs of dependencies between operations, and the search for cycles in them.
//!
//! A checker adds labelled edges (a kind from a small set, and a detail such as the key that
//! made them), then asks for cycles whose edges obey a constraint: only some kinds, or exactly
//! one edge of a kind. Cycles live inside strongly connected components (Tarjan's algorithm);
//! within one, a breadth-first search finds a shortest path back, so the cycle printed is short.

use std::collections::VecDeque;

/// A labelled edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edge<K> {
    /// Where it starts.
    pub from: usize,
    /// Where it ends.
    pub to: usize,
    /// Why it exists.
    pub kind: K,
    /// Which key (or other detail) made it, for printing.
    pub detail: u64,
}

/// A directed multigraph over nodes `0..n`.
pub(crate) struct Graph<K> {
    out: Vec<Vec<Edge<K>>>,
}

impl<K: Copy + Eq> Graph<K> {
    /// A graph of `nodes` nodes and no edges.
    pub fn new(nodes: usize) -> Self {
        Graph {
            out: vec![Vec::new(); nodes],
        }
    }

    /// Adds an edge; edges from a node to itself are left out (they are no dependency).
    pub fn add(&mut self, from: usize, to: usize, kind: K, detail: u64) {
        if from != to {
            self.out[from].push(Edge {
                from,
                to,
                kind,
                detail,
            });
        }
    }

    /// Every edge, by node.
    pub fn edges(&self) -> impl Iterator<Item = &Edge<K>> {
        self.out.iter().flatten()
    }

    /// The strongly connected components of more than one node, using only edges `allowed`
    /// accepts (Tarjan's algorithm, without recursion).
    pub fn components(&self, allowed: impl Fn(K) -> bool) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.out.len();
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut components = Vec::new();
        let mut next = 0;
        for root in 0..n {
            if index[root] != UNSEEN {
                continue;
            }
            // Each frame: a node and how many of its edges were followed.
            let mut frames = vec![(root, 0)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (node, ref mut followed)) = frames.last_mut() {
                if let Some(edge) = self.out[node].get(*followed) {
                    *followed += 1;
                    if !allowed(edge.kind) {
                        continue;
                    }
                    let to = edge.to;
                    if index[to] == UNSEEN {
                        index[to] = next;
                        low[to] = next;
                        next += 1;
                        stack.push(to);
                        on_stack[to] = true;
                        frames.push((to, 0));
                    } else if on_stack[to] {
                        low[node] = low[node].min(index[to]);
                    }
                    continue;
                }
                frames.pop();
                if let Some(&(parent, _)) = frames.last() {
                    low[parent] = low[parent].min(low[node]);
                }
                if low[node] == index[node] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack[member] = false;
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort_unstable();
                        components.push(component);
                    }
                }
            }
        }
        components
    }

    /// A shortest path from `from` to `to` (the edges, in order; empty when they are the same
    /// node) using only edges `allowed` accepts and nodes `within` marks.
    pub fn path(
        &self,
        from: usize,
        to: usize,
        within: &[bool],
        allowed: impl Fn(K) -> bool,
    ) -> Option<Vec<Edge<K>>> {
        let mut came_by: Vec<Option<Edge<K>>> = vec![None; self.out.len()];
        let mut reached = vec![false; self.out.len()];
        reached[from] = true;
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = Vec::new();
                let mut at = to;
                while let Some(edge) = came_by[at] {
                    path.push(edge);
                    at = edge.from;
                }
                path.reverse();
                return Some(path);
            }
            for edge in &self.out[node] {
                if within[edge.to] && !reached[edge.to] && allowed(edge.kind) {
                    reached[edge.to] = true;
                    came_by[edge.to] = Some(*edge);
                    queue.push_back(edge.to);
                }
            }
        }
        None
    }

    /// A shortest cycle inside `component` made of edges `allowed` accepts, passing through
    /// `first` (which must be an edge between two of its nodes): `first`, then the path back.
    pub fn cycle_through(
        &self,
        first: Edge<K>,
        within: &[bool],
        allowed: impl Fn(K) -> bool,
    ) -> Option<Vec<Edge<K>>> {
        let back = self.path(first.to, first.from, within, allowed)?;
        Some(std::iter::once(first).chain(back).collect())
    }
}

/// Marks of the nodes of `component` among `nodes` nodes, for [`Graph::path`].
pub(crate) fn members(nodes: usize, component: &[usize]) -> Vec<bool> {
    let mut within = vec![false; nodes];
    for &node in component {
        within[node] = true;
    }
    within
}

#[cfg(test)]
mod tests;
