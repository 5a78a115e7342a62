use super::*;

fn graph(nodes: usize, edges: &[(usize, usize, char)]) -> Graph<char> {
    let mut g = Graph::new(nodes);
    for &(from, to, kind) in edges {
        g.add(from, to, kind, 0);
    }
    g
}

#[test]
fn components_are_the_cycles_of_allowed_edges() {
    let g = graph(
        6,
        &[
            (0, 1, 'a'),
            (1, 2, 'a'),
            (2, 0, 'b'),
            (3, 4, 'a'),
            (4, 3, 'a'),
            (4, 5, 'a'),
        ],
    );
    assert_eq!(g.components(|_| true), vec![vec![0, 1, 2], vec![3, 4]]);
    assert_eq!(g.components(|k| k == 'a'), vec![vec![3, 4]]);
}

#[test]
fn a_long_chain_needs_no_recursion() {
    let n = 200_000;
    let mut g = Graph::new(n);
    for i in 0..n {
        g.add(i, (i + 1) % n, (), 0);
    }
    assert_eq!(g.components(|_| true)[0].len(), n);
}

#[test]
fn the_cycle_found_is_a_shortest_one_through_the_edge() {
    let g = graph(
        5,
        &[
            (0, 1, 'r'),
            (1, 2, 'w'),
            (2, 3, 'w'),
            (3, 0, 'w'),
            (1, 4, 'w'),
            (4, 0, 'w'),
        ],
    );
    let within = members(5, &[0, 1, 2, 3, 4]);
    let first = g.edges().find(|e| e.kind == 'r').copied().unwrap();
    let cycle = g.cycle_through(first, &within, |k| k == 'w').unwrap();
    let nodes: Vec<usize> = cycle.iter().map(|e| e.from).collect();
    assert_eq!(nodes, vec![0, 1, 4]);
    assert!(g.cycle_through(first, &within, |k| k == 'r').is_none());
}
