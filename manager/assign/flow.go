package assign

import (
	"math"
	"slices"
)

// flowNet is a flow network with edge costs. Edges are tried in the order
// they were added, which makes results deterministic and lets callers state
// preferences among equal choices by that order.
type flowNet struct {
	adj   [][]int // node → its edges, in insertion order
	to    []int   // edge → head; edge e^1 is the reverse of e
	cap   []int   // edge → residual capacity
	cost  []int   // edge → cost of one unit; the reverse's is the opposite
	pot   []int   // node → potential; when set, only edges of zero reduced cost are used
	level []int
	next  []int
}

// newFlowNet returns a network of nodes nodes, with room for edges edges.
func newFlowNet(nodes, edges int) *flowNet {
	return &flowNet{
		adj:   make([][]int, nodes),
		to:    make([]int, 0, 2*edges),
		cap:   make([]int, 0, 2*edges),
		cost:  make([]int, 0, 2*edges),
		level: make([]int, nodes),
		next:  make([]int, nodes),
	}
}

// reserve makes room for n more edges at node u.
func (g *flowNet) reserve(u, n int) { g.adj[u] = slices.Grow(g.adj[u], n) }

// addEdge adds an edge u→v of capacity c and non-negative cost, and returns
// its id.
func (g *flowNet) addEdge(u, v, c, cost int) int {
	e := len(g.to)
	g.to = append(g.to, v, u)
	g.cap = append(g.cap, c, 0)
	g.cost = append(g.cost, cost, -cost)
	g.adj[u] = append(g.adj[u], e)
	g.adj[v] = append(g.adj[v], e+1)
	return e
}

// flow returns the flow on edge e.
func (g *flowNet) flow(e int) int { return g.cap[e^1] }

// maxFlow returns a maximum flow from s to t, ignoring costs (Dinic's
// algorithm).
func (g *flowNet) maxFlow(s, t int) int {
	g.pot = nil
	return g.blockingFlows(s, t)
}

// minCostFlow returns a maximum flow from s to t of least cost (primal-dual:
// Dijkstra on reduced costs sets node potentials, then Dinic saturates the
// edges of zero reduced cost; costs take few distinct path lengths here, so
// there are few rounds).
func (g *flowNet) minCostFlow(s, t int) int {
	g.pot = make([]int, len(g.adj))
	total := 0
	for {
		dist := g.distances(s)
		if dist[t] < 0 {
			return total
		}
		for v, d := range dist {
			if d >= 0 {
				g.pot[v] += d
			}
		}
		f := g.blockingFlows(s, t)
		if f == 0 {
			return total // cannot happen with exact distances; never spin
		}
		total += f
	}
}

// usable reports whether edge e from u has residual capacity and, when
// potentials are set, zero reduced cost.
func (g *flowNet) usable(u, e int) bool {
	return g.cap[e] > 0 && (g.pot == nil || g.cost[e]+g.pot[u]-g.pot[g.to[e]] == 0)
}

// distances returns the cheapest reduced-cost distance from s to every node
// over edges with residual capacity, -1 for unreachable nodes (Dijkstra).
func (g *flowNet) distances(s int) []int {
	dist := make([]int, len(g.adj))
	for i := range dist {
		dist[i] = -1
	}
	dist[s] = 0
	var q nodeHeap
	q.push(s, 0)
	done := make([]bool, len(g.adj))
	for len(q.items) > 0 {
		u := q.pop()
		if done[u] {
			continue
		}
		done[u] = true
		for _, e := range g.adj[u] {
			v := g.to[e]
			if g.cap[e] <= 0 || done[v] {
				continue
			}
			if d := dist[u] + g.cost[e] + g.pot[u] - g.pot[v]; dist[v] < 0 || d < dist[v] {
				dist[v] = d
				q.push(v, d)
			}
		}
	}
	return dist
}

// nodeHeap is a binary min-heap of nodes by the distance they were pushed
// with; a node may be pushed more than once, with a smaller distance each
// time, and its older entries are skipped when popped. Entries keep their
// own distance: keying them by the live distance would let a decrease break
// the heap order.
type nodeHeap struct {
	items []heapItem
}

// heapItem is a node and the distance it was pushed with.
type heapItem struct{ node, dist int }

func (h *nodeHeap) less(i, j int) bool { return h.items[i].dist < h.items[j].dist }

func (h *nodeHeap) push(v, d int) {
	h.items = append(h.items, heapItem{v, d})
	for i := len(h.items) - 1; i > 0 && h.less(i, (i-1)/2); i = (i - 1) / 2 {
		h.items[i], h.items[(i-1)/2] = h.items[(i-1)/2], h.items[i]
	}
}

func (h *nodeHeap) pop() int {
	top, n := h.items[0].node, len(h.items)-1
	h.items[0] = h.items[n]
	h.items = h.items[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			break
		}
		h.items[i], h.items[c] = h.items[c], h.items[i]
		i = c
	}
	return top
}

// blockingFlows augments the flow from s to t over usable edges until no
// such path remains, and returns the amount added (Dinic's algorithm).
func (g *flowNet) blockingFlows(s, t int) int {
	total := 0
	for g.levels(s, t) {
		clear(g.next)
		for f := g.augment(s, t, math.MaxInt); f > 0; f = g.augment(s, t, math.MaxInt) {
			total += f
		}
	}
	return total
}

// levels sets the BFS distance from s of every node over usable edges and
// reports whether t is reachable.
func (g *flowNet) levels(s, t int) bool {
	for i := range g.level {
		g.level[i] = -1
	}
	g.level[s] = 0
	queue := []int{s}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, e := range g.adj[u] {
			if v := g.to[e]; g.level[v] < 0 && g.usable(u, e) {
				g.level[v] = g.level[u] + 1
				queue = append(queue, v)
			}
		}
	}
	return g.level[t] >= 0
}

// augment pushes up to f units along one shortest usable path from u to t
// and returns the amount pushed.
func (g *flowNet) augment(u, t, f int) int {
	if u == t {
		return f
	}
	for ; g.next[u] < len(g.adj[u]); g.next[u]++ {
		e := g.adj[u][g.next[u]]
		v := g.to[e]
		if g.level[v] != g.level[u]+1 || !g.usable(u, e) {
			continue
		}
		if d := g.augment(v, t, min(f, g.cap[e])); d > 0 {
			g.cap[e] -= d
			g.cap[e^1] += d
			return d
		}
	}
	return 0
}
