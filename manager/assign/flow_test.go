package assign

import (
	"math/rand/v2"
	"testing"
)

// TestDistancesHeap pushes nodes with distances that keep decreasing, as
// Dijkstra does, and checks that every pop returns the smallest pending
// distance: an entry keyed by its node's live distance breaks this.
func TestDistancesHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 10_000 {
		const n = 10
		dist := make([]int, n)
		for i := range dist {
			dist[i] = -1
		}
		var h nodeHeap
		done := make([]bool, n)
		floor := 0
		for range 40 {
			if rng.IntN(3) > 0 || len(h.items) == 0 {
				v, d := rng.IntN(n), floor+rng.IntN(100)
				if !done[v] && (dist[v] < 0 || d < dist[v]) {
					dist[v] = d
					h.push(v, d)
				}
				continue
			}
			u := h.pop()
			if done[u] {
				continue
			}
			done[u] = true
			for v, d := range dist {
				if !done[v] && d >= 0 && d < dist[u] {
					t.Fatalf("trial %d: popped node %d at %d while node %d at %d is pending", trial, u, dist[u], v, d)
				}
			}
			floor = dist[u]
		}
	}
}
