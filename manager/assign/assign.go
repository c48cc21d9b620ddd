// Package assign places partitions on the members of a group: Assign
// computes a generation's Assignment (one active and up to S standbys per
// partition, balanced, moving as little as it can) from the previous one,
// by maximum and minimum-cost flows. It is pure: no I/O, no clock, no
// randomness; the same arguments give the same assignment on every node.
package assign

import (
	"errors"
	"fmt"
	"slices"
)

// ErrInvalid is returned, wrapped with the partition or member at fault, by
// Assignment.Validate and Assignment.WellFormed for an assignment that
// breaks one of the invariants Assign guarantees.
var ErrInvalid = errors.New("edgetables: invalid partition assignment")

// Assignment is the partition assignment of one generation.
//
// Partition p of every table is placed together: the assignment is of
// partitions, not of table partitions. Each partition has one active owner,
// which processes its events and writes its changelog, and up to S standbys,
// which follow the changelog and are promoted first when the active moves.
type Assignment struct {
	Generation uint64     `json:"generation"`
	Partitions int        `json:"partitions"`
	Actives    []string   `json:"actives"`  // index p → member ("" = unassigned, only when there are no members)
	Standbys   [][]string `json:"standbys"` // index p → members, sorted
}

// Assign returns the assignment of generation prev.Generation+1 for members
// (any order, duplicates and "" ignored), partitions P and standbys S per
// partition, starting from prev (zero value: none; a prev with another
// partition count is ignored, and so are the names in prev that are not
// members). A negative P or S counts as 0.
//
// With M members the result guarantees, in this order of priority:
//
//  1. Balance: every member owns ⌊P/M⌋ or ⌈P/M⌉ actives; each partition has
//     s = min(S, M−1) distinct standbys, never its active; every member
//     holds ⌊P·(1+s)/M⌋ or ⌈P·(1+s)/M⌉ partitions, actives and standbys
//     together, so a member with fewer actives holds more standbys. This
//     balance is always reachable once the actives are balanced. With M = 0
//     every active is "" and there are no standbys.
//  2. Minimal movement: the fewest actives change owner among members present
//     in prev and now. A member keeps every active it had but those it must
//     give up to the balance, taken from the most loaded; a pure join moves
//     exactly what the new members receive, a pure leave only the leavers'
//     actives.
//  3. Standby promotion: among the placements of minimal movement, the one
//     where the most moving actives go to a standby of theirs in prev, so
//     that failover finds a warm copy.
//  4. Failover readiness (s = 1): the standbys are placed so that if any one
//     member fails, the next Assign gives each of its actives to that
//     active's standby, whenever the balance allows such a placement (it
//     always does for two or three members with P ≥ 2M). The standbys of a
//     member's actives are spread over the others in the proportions their
//     room in the survivors' balance calls for. Without this a failure can
//     move an active to a member that must replay its whole changelog first.
//  5. Sticky standbys: no placement as ready keeps more of the standbys of
//     prev that are still valid (a member, not the new active); among those,
//     the most former owners of moved actives become their standbys, having
//     the data. Remaining ties spread each member's actives over the others.
//
// The result depends only on the arguments (ties break by member name and
// partition number), so every member can recompute the leader's result; and
// Assign(prev, members, P, S) of a prev that is valid for those members with
// s standbys per partition returns prev's placement with Generation+1.
//
// Cost: O(P·S + M) when prev is already valid for members with s standbys.
// Otherwise a maximum flow for the actives and a minimum-cost flow for the
// standbys over P·M + 3M² edges: O(P·M + M²) memory, and in practice a few
// passes over those edges (about 2.5 MB and 4–11 ms for P = 1024, M = 16,
// S = 1, BenchmarkAssign). Assign has no side effects and is safe for
// concurrent use.
func Assign(prev Assignment, members []string, partitions, standbys int) Assignment {
	names := normalizeMembers(members)
	p := max(partitions, 0)
	next := Assignment{
		Generation: prev.Generation + 1,
		Partitions: p,
		Actives:    make([]string, p),
		Standbys:   make([][]string, p),
	}
	for i := range next.Standbys {
		next.Standbys[i] = []string{}
	}
	if len(names) == 0 || p == 0 {
		return next
	}
	s := min(max(standbys, 0), len(names)-1)
	if prev.Partitions == p && prev.Validate(names) == nil && len(prev.Standbys[0]) == s {
		copy(next.Actives, prev.Actives) // what placeByFlows returns, faster
		for i, bs := range prev.Standbys {
			next.Standbys[i] = slices.Clone(bs)
		}
		return next
	}
	placeByFlows(&next, prev, names, s)
	return next
}

// placeByFlows fills next (its Partitions > 0) with the actives and s
// standbys per partition for the sorted members names (at least one),
// starting from prev.
func placeByFlows(next *Assignment, prev Assignment, names []string, s int) {
	h := readPrev(prev, names, next.Partitions)
	owners := placeActives(h, len(names))
	backups := placeStandbys(h, owners, len(names), s)
	for i, o := range owners {
		next.Actives[i] = names[o]
		next.Standbys[i] = next.Standbys[i][:0]
		for _, b := range backups[i] {
			next.Standbys[i] = append(next.Standbys[i], names[b])
		}
	}
}

// normalizeMembers returns members sorted, without duplicates and "".
func normalizeMembers(members []string) []string {
	names := slices.Clone(members)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > 0 && names[0] == "" {
		names = names[1:]
	}
	return names
}

// prevPlacement is prev in member indexes. owner[p] is the previous active of
// p, -1 if none or no longer a member; standbys[p] are the previous standbys
// of p that are still members, distinct, ascending, without p's previous
// active.
type prevPlacement struct {
	owner    []int
	standbys [][]int
}

// links returns the number of (partition, previous standby) pairs.
func (h prevPlacement) links() int {
	n := 0
	for _, bs := range h.standbys {
		n += len(bs)
	}
	return n
}

// readPrev translates prev for the sorted members names and p partitions.
func readPrev(prev Assignment, names []string, p int) prevPlacement {
	h := prevPlacement{owner: make([]int, p), standbys: make([][]int, p)}
	for i := range h.owner {
		h.owner[i] = -1
	}
	if prev.Partitions != p || len(prev.Actives) != p {
		return h
	}
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	for i, a := range prev.Actives {
		if m, ok := index[a]; ok {
			h.owner[i] = m
		}
		if i >= len(prev.Standbys) {
			continue
		}
		for _, b := range prev.Standbys[i] {
			if m, ok := index[b]; ok && b != a {
				h.standbys[i] = append(h.standbys[i], m)
			}
		}
		slices.Sort(h.standbys[i])
		h.standbys[i] = slices.Compact(h.standbys[i])
	}
	return h
}

// placeActives returns the active owner of every partition among m members.
//
// With q = ⌊P/M⌋ and k = P mod M, k members own q+1 actives and the others q.
// The members that had more than q ("givers") keep q+1 if there are at most k
// of them, and otherwise k of them keep q+1 and the rest q: that is the
// minimal movement. The actives to move (orphans and the givers' surplus) go
// first to a previous standby with room, chosen by a maximum flow so that the
// most are promoted, then to the least loaded members.
func placeActives(h prevPlacement, m int) []int {
	p := len(h.owner)
	q, k := p/m, p%m
	owned := make([][]int, m)
	for i, o := range h.owner {
		if o >= 0 {
			owned[o] = append(owned[o], i)
		}
	}
	givers := 0
	for _, ps := range owned {
		if len(ps) > q {
			givers++
		}
	}
	// extra: givers that must come down to q although they had more; free:
	// members that may end at q+1 although they had q or less.
	extra, free := max(0, givers-k), max(0, k-givers)

	// Nodes: source, sink, extra pool, free pool, then per member a giver
	// node and a receiver node, then one node per partition.
	const src, sink, xpool, fpool = 0, 1, 2, 3
	give := func(j int) int { return 4 + j }
	recv := func(j int) int { return 4 + m + j }
	part := func(i int) int { return 4 + 2*m + i }
	g := newFlowNet(4+2*m+p, 2+3*m+2*p+h.links())
	xpoolEdge := g.addEdge(src, xpool, extra, 0)
	fpoolEdge := g.addEdge(fpool, sink, free, 0)
	extraEdge := make([]int, m)
	for j, ps := range owned {
		if len(ps) > q {
			g.addEdge(src, give(j), len(ps)-q-1, 0)
			extraEdge[j] = g.addEdge(xpool, give(j), 1, 0)
			for _, i := range ps {
				g.addEdge(give(j), part(i), 1, 0)
			}
			continue
		}
		g.addEdge(recv(j), sink, q-len(ps), 0)
		g.addEdge(recv(j), fpool, 1, 0)
	}
	type promotion struct{ i, j, e int }
	var promotions []promotion
	for i, o := range h.owner {
		if o < 0 {
			g.addEdge(src, part(i), 1, 0)
		}
		for _, b := range h.standbys[i] {
			if len(owned[b]) <= q {
				promotions = append(promotions, promotion{i, b, g.addEdge(part(i), recv(b), 1, 0)})
			}
		}
	}
	g.maxFlow(src, sink)

	owners := make([]int, p)
	for i := range owners {
		owners[i] = -1
	}
	count := make([]int, m)
	for _, pr := range promotions {
		if g.flow(pr.e) > 0 {
			owners[pr.i] = pr.j
			count[pr.j]++
		}
	}
	release := giverReleases(owned, q, extra-g.flow(xpoolEdge), func(j int) bool { return g.flow(extraEdge[j]) > 0 })
	for j, ps := range owned {
		keep := len(ps) - release[j]
		for _, i := range ps {
			if owners[i] < 0 && keep > 0 {
				owners[i] = j
				count[j]++
				keep--
			}
		}
	}
	freeLeft := free - g.flow(fpoolEdge)
	for i := range owners {
		if owners[i] < 0 {
			j := leastLoadedReceiver(owned, count, q, &freeLeft)
			owners[i] = j
			count[j]++
		}
	}
	return owners
}

// giverReleases returns how many of its previous actives each member gives
// up: c−q−1 for a giver that had c > q, plus one for the givers that take an
// extra release. extraUsed tells which took one in the flow; extraLeft more
// are chosen among the others, the most loaded first, then by name.
func giverReleases(owned [][]int, q, extraLeft int, extraUsed func(int) bool) []int {
	release := make([]int, len(owned))
	var rest []int
	for j, ps := range owned {
		if len(ps) <= q {
			continue
		}
		release[j] = len(ps) - q - 1
		if extraUsed(j) {
			release[j]++
		} else {
			rest = append(rest, j)
		}
	}
	slices.SortStableFunc(rest, func(a, b int) int { return len(owned[b]) - len(owned[a]) })
	for _, j := range rest[:extraLeft] {
		release[j]++
	}
	return release
}

// leastLoadedReceiver returns the non-giver with the fewest actives that has
// room: below q, or at q while free ceil slots remain (taking one).
func leastLoadedReceiver(owned [][]int, count []int, q int, freeLeft *int) int {
	best := -1
	for j, c := range count {
		if len(owned[j]) > q || c > q || (c == q && *freeLeft == 0) {
			continue
		}
		if best < 0 || c < count[best] {
			best = j
		}
	}
	if best >= 0 && count[best] == q {
		*freeLeft--
	}
	return best
}

// placeStandbys returns the standbys of every partition, ascending: s per
// partition, never its owner, and ⌊P·(1+s)/M⌋ or ⌈P·(1+s)/M⌉ partitions
// per member, actives and standbys together (a member with fewer actives
// holds more standbys).
//
// It is a minimum-cost maximum flow: partitions (s each) → (owner, member)
// pairs → members → sink. Costs, from the most to the least important:
//
//   - readiness (s = 1 only): the failure of a member o gives each survivor
//     j room for lo(o,j) of o's actives and one more on the survivors the
//     balance lets hold one more (failoverRoom). A standby of o's beyond
//     lo(o,j) costs R, beyond lo(o,j)+1 costs 2R: the cheapest placements
//     are those where every active of every member can be promoted to its
//     standby if that member fails, when there are such placements;
//   - stickiness: a standby of prev costs 0, the former owner of a moved
//     active W and any other member W+1, with W above the number of
//     standbys: the result keeps the most standbys of prev it can, then
//     uses the most former owners.
//
// Remaining ties spread the standbys of each member's actives over the
// other members (its k-th active prefers the k-th member after it in name
// order).
func placeStandbys(h prevPlacement, owners []int, m, s int) [][]int {
	p := len(owners)
	out := make([][]int, p)
	if s <= 0 {
		return out
	}
	actives := make([]int, m)
	for _, o := range owners {
		actives[o]++
	}
	const src, sink, pool = 0, 1, 2
	part := func(i int) int { return 3 + i }
	memb := func(j int) int { return 3 + p + j }
	pair := func(o, j int) int { return 3 + p + m + o*m + j }
	g := newFlowNet(3+p+m+m*m, 1+p*(m+1)+2*m+3*m*m)
	for i := range p {
		g.reserve(part(i), m)
		g.addEdge(src, part(i), s, 0)
	}
	w := p*s + 1
	r := (w+1)*p*s + 1 // above any sum of stickiness costs
	for o := range m {
		room, ceil := failoverRoom(actives, o, p)
		for j := range m {
			if j == o || actives[o] == 0 {
				continue
			}
			g.addEdge(pair(o, j), memb(j), room[j], 0)
			if s == 1 {
				if ceil[j] {
					g.addEdge(pair(o, j), memb(j), 1, r)
				}
				g.addEdge(pair(o, j), memb(j), p, 2*r)
			} else {
				g.addEdge(pair(o, j), memb(j), p, 0)
			}
		}
	}
	total := p * (1 + s)
	low, high := total/m, (total+m-1)/m
	ceil := total % m
	for j := range m {
		g.addEdge(memb(j), sink, max(0, low-actives[j]), 0)
		g.addEdge(memb(j), pool, max(0, high-max(actives[j], low)), 0)
		if actives[j] > low {
			ceil-- // a member whose actives alone are above low takes a ceiling
		}
	}
	g.addEdge(pool, sink, max(0, ceil), 0)
	seen := make([]int, m) // seen[j] == i+1: j already has an edge from i
	rank := make([]int, m) // rank[o]: how many partitions of o came before
	edges := make([][]int, p)
	for i, o := range owners {
		add := func(j, cost int) {
			if j != o && seen[j] != i+1 {
				seen[j] = i + 1
				edges[i] = append(edges[i], g.addEdge(part(i), pair(o, j), 1, cost))
			}
		}
		for _, b := range h.standbys[i] {
			add(b, 0)
		}
		if h.owner[i] >= 0 {
			add(h.owner[i], w)
		}
		for k := range m - 1 {
			add((o+1+(rank[o]+k)%(m-1))%m, w+1)
		}
		rank[o]++
	}
	g.minCostFlow(src, sink)
	for i, o := range owners {
		out[i] = make([]int, 0, s)
		for _, e := range edges[i] {
			if g.flow(e) > 0 {
				out[i] = append(out[i], g.to[e]-pair(o, 0))
			}
		}
		slices.Sort(out[i])
	}
	return out
}

// failoverRoom returns, for each member j other than o, how many of o's
// actives j must take if o fails, given each member's actives: the balance
// of the survivors, ⌊P/(M−1)⌋ each, leaves j room for that many more than
// it owns. ceil[j] tells whether j may also take one more while the
// ceilings of that balance last (it owns no more than ⌊P/(M−1)⌋).
// room[o] is 0 and ceil[o] false.
func failoverRoom(actives []int, o, p int) (room []int, ceil []bool) {
	m := len(actives)
	room, ceil = make([]int, m), make([]bool, m)
	if m < 2 {
		return room, ceil
	}
	q := p / (m - 1)
	for j, a := range actives {
		if j != o && a <= q {
			room[j], ceil[j] = q-a, true
		}
	}
	return room, ceil
}

// WellFormed checks a's shape, whoever wrote it (a member checks an
// assignment it reads before it applies it): one active and one
// standby list per partition, no name both a partition's active and its
// standby. Validate checks a leader's assignment fully.
func (a Assignment) WellFormed() error {
	if a.Partitions < 0 || len(a.Actives) != a.Partitions || len(a.Standbys) != a.Partitions {
		return fmt.Errorf("%w: %d partitions with %d actives and %d standby lists",
			ErrInvalid, a.Partitions, len(a.Actives), len(a.Standbys))
	}
	for p, bs := range a.Standbys {
		if a.Actives[p] != "" && slices.Contains(bs, a.Actives[p]) {
			return fmt.Errorf("%w: partition %d: %s is its active and a standby", ErrInvalid, p, a.Actives[p])
		}
		if !slices.IsSorted(bs) {
			return fmt.Errorf("%w: partition %d: standbys not sorted", ErrInvalid, p)
		}
	}
	return nil
}

// ActivesOf returns the partitions whose active is member, ascending
// (ActivesOf("") returns the unassigned ones). It costs O(P).
func (a Assignment) ActivesOf(member string) []int {
	var ps []int
	for p, o := range a.Actives {
		if o == member {
			ps = append(ps, p)
		}
	}
	return ps
}

// StandbysOf returns the partitions member is a standby of, ascending. It
// costs O(P·log S).
func (a Assignment) StandbysOf(member string) []int {
	var ps []int
	for p, bs := range a.Standbys {
		if _, ok := slices.BinarySearch(bs, member); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

// Owner returns the active of partition p, "" if p is out of range or
// unassigned.
func (a Assignment) Owner(p int) string {
	if p < 0 || p >= len(a.Actives) {
		return ""
	}
	return a.Actives[p]
}

// Equal reports whether a and b place every partition on the same active and
// standbys, whatever their generations. A nil standby list equals an empty
// one.
func (a Assignment) Equal(b Assignment) bool {
	if a.Partitions != b.Partitions || !slices.Equal(a.Actives, b.Actives) ||
		len(a.Standbys) != len(b.Standbys) {
		return false
	}
	for p := range a.Standbys {
		if !slices.Equal(a.Standbys[p], b.Standbys[p]) {
			return false
		}
	}
	return true
}

// Validate checks that a is a balanced assignment for members (any order,
// duplicates and "" ignored), as Assign guarantees, and returns an error
// wrapping ErrInvalid that names the first fault otherwise:
//
//   - one active and one standby list per partition;
//   - with M = 0: every active "", no standbys;
//   - every active a member, each member owning ⌊P/M⌋ or ⌈P/M⌉ actives;
//   - the same number s ≤ M−1 of standbys on every partition, sorted,
//     distinct, members, never the partition's active;
//   - each member holding ⌊P·(1+s)/M⌋ or ⌈P·(1+s)/M⌉ partitions, actives
//     and standbys together.
//
// It does not check s against the configured S, which a does not carry. It
// costs O(P·S + M).
func (a Assignment) Validate(members []string) error {
	if a.Partitions < 0 || len(a.Actives) != a.Partitions || len(a.Standbys) != a.Partitions {
		return fmt.Errorf("%w: %d partitions with %d actives and %d standby lists",
			ErrInvalid, a.Partitions, len(a.Actives), len(a.Standbys))
	}
	names := normalizeMembers(members)
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	if err := a.validateActives(names, index); err != nil {
		return err
	}
	return a.validateStandbys(names, index)
}

// validateActives checks the owners and their balance.
func (a Assignment) validateActives(names []string, index map[string]int) error {
	count := make([]int, len(names))
	for p, o := range a.Actives {
		j, ok := index[o]
		if !ok && (o != "" || len(names) > 0) {
			return fmt.Errorf("%w: partition %d: active %q is not a member", ErrInvalid, p, o)
		}
		if ok {
			count[j]++
		}
	}
	if len(names) == 0 {
		return nil
	}
	return checkBalance("actives", names, count, a.Partitions)
}

// validateStandbys checks the standby lists and their balance.
func (a Assignment) validateStandbys(names []string, index map[string]int) error {
	if a.Partitions == 0 {
		return nil
	}
	s := len(a.Standbys[0])
	if s > max(len(names)-1, 0) {
		return fmt.Errorf("%w: %d standbys per partition for %d members", ErrInvalid, s, len(names))
	}
	count := make([]int, len(names)) // actives and standbys
	for _, o := range a.Actives {
		if j, ok := index[o]; ok {
			count[j]++
		}
	}
	for p, bs := range a.Standbys {
		if len(bs) != s {
			return fmt.Errorf("%w: partition %d: %d standbys, partition 0 has %d", ErrInvalid, p, len(bs), s)
		}
		for i, b := range bs {
			j, ok := index[b]
			switch {
			case !ok:
				return fmt.Errorf("%w: partition %d: standby %q is not a member", ErrInvalid, p, b)
			case b == a.Actives[p]:
				return fmt.Errorf("%w: partition %d: %q is both active and standby", ErrInvalid, p, b)
			case i > 0 && bs[i-1] >= b:
				return fmt.Errorf("%w: partition %d: standbys not sorted and distinct: %q", ErrInvalid, p, bs)
			}
			count[j]++
		}
	}
	if len(names) == 0 {
		return nil
	}
	return checkBalance("actives and standbys", names, count, a.Partitions*(1+s))
}

// checkBalance checks that each member's count is ⌊total/M⌋ or ⌈total/M⌉.
func checkBalance(what string, names []string, count []int, total int) error {
	low := total / len(names)
	high := low
	if total%len(names) != 0 {
		high++
	}
	for j, c := range count {
		if c < low || c > high {
			return fmt.Errorf("%w: member %q holds %d %s, want %d to %d",
				ErrInvalid, names[j], c, what, low, high)
		}
	}
	return nil
}
