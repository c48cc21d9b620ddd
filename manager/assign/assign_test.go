package assign

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// memberNames returns the names n0..n(k-1).
func memberNames(k int) []string {
	names := make([]string, k)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	return names
}

// activesPerMember returns the number of actives of each owner.
func activesPerMember(a Assignment) map[string]int {
	c := map[string]int{}
	for _, o := range a.Actives {
		c[o]++
	}
	return c
}

// activesMoved counts the partitions whose previous owner is in present and
// whose owner changed.
func activesMoved(prev, next Assignment, present map[string]bool) int {
	n := 0
	if prev.Partitions != next.Partitions || len(prev.Actives) != next.Partitions {
		return 0
	}
	for p, o := range prev.Actives {
		if present[o] && next.Actives[p] != o {
			n++
		}
	}
	return n
}

// minActiveMoves is the least number of actives that members present before and
// after must give up for the balance: the k = P mod M most loaded may keep
// ⌈P/M⌉, the others ⌊P/M⌋.
func minActiveMoves(prev Assignment, after []string, partitions int) int {
	if len(after) == 0 || prev.Partitions != partitions || len(prev.Actives) != partitions {
		return 0
	}
	c := activesPerMember(prev)
	var loads []int
	for _, m := range normalizeMembers(after) {
		loads = append(loads, c[m])
	}
	slices.Sort(loads)
	slices.Reverse(loads)
	q, k := partitions/len(loads), partitions%len(loads)
	n := 0
	for i, l := range loads {
		keep := q
		if i < k {
			keep++
		}
		n += max(0, l-keep)
	}
	return n
}

// nameSet returns names as a set.
func nameSet(names []string) map[string]bool {
	s := map[string]bool{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

// mustValidateAssignment fails the test if a is not valid for members.
func mustValidateAssignment(t testing.TB, a Assignment, members []string) {
	t.Helper()
	if err := a.Validate(members); err != nil {
		t.Fatalf("%v\nassignment: %+v", err, a)
	}
}

// checkAssignPromotions checks rule 3: a moving active that did not go to one of
// its standbys in prev had no standby in prev that could take it in place of
// its new owner X without breaking the active balance (the standby below
// ⌈P/M⌉ and X above ⌊P/M⌋). Such a swap would not change the movement.
func checkAssignPromotions(t testing.TB, prev, next Assignment, members []string) {
	t.Helper()
	if prev.Partitions != next.Partitions || len(prev.Actives) != next.Partitions || len(members) == 0 {
		return
	}
	present := nameSet(members)
	n := len(normalizeMembers(members))
	low := next.Partitions / n
	high := (next.Partitions + n - 1) / n
	count := activesPerMember(next)
	for p, x := range next.Actives {
		var standbys []string
		if p < len(prev.Standbys) {
			standbys = prev.Standbys[p]
		}
		if x == prev.Actives[p] || slices.Contains(standbys, x) {
			continue
		}
		for _, b := range standbys {
			if present[b] && b != prev.Actives[p] && count[b] < high && count[x] > low {
				t.Fatalf("partition %d moved %q → %q, but its standby %q (%d actives) could take it (%q has %d)\nprev: %+v\nnext: %+v",
					p, prev.Actives[p], x, b, count[b], x, count[x], prev, next)
			}
		}
	}
}

func TestAssignTable(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev       Assignment
		members    []string
		partitions int
		standbys   int
		actives    []string   // nil: not checked
		backups    [][]string // nil: not checked
	}{
		{name: "no members", members: nil, partitions: 3, standbys: 1,
			actives: []string{"", "", ""}, backups: [][]string{{}, {}, {}}},
		{name: "no partitions", members: memberNames(2), partitions: 0, standbys: 1,
			actives: []string{}, backups: [][]string{}},
		{name: "one member", members: memberNames(1), partitions: 4, standbys: 2,
			actives: []string{"n0", "n0", "n0", "n0"}, backups: [][]string{{}, {}, {}, {}}},
		{name: "two members", members: []string{"n1", "n0", "n1"}, partitions: 4, standbys: 1,
			actives: []string{"n0", "n1", "n0", "n1"}, backups: [][]string{{"n1"}, {"n0"}, {"n1"}, {"n0"}}},
		{name: "three members", members: memberNames(3), partitions: 8, standbys: 2,
			actives: []string{"n0", "n1", "n2", "n0", "n1", "n2", "n0", "n1"}},
		{name: "P < M", members: memberNames(5), partitions: 2, standbys: 1,
			actives: []string{"n0", "n1"}},
		{name: "P = 1", members: memberNames(3), partitions: 1, standbys: 3,
			actives: []string{"n0"}, backups: [][]string{{"n1", "n2"}}},
		{name: "S > M-1", members: memberNames(2), partitions: 3, standbys: 3,
			actives: []string{"n0", "n1", "n0"}, backups: [][]string{{"n1"}, {"n0"}, {"n1"}}},
		{name: "negative S", members: memberNames(2), partitions: 2, standbys: -1,
			actives: []string{"n0", "n1"}, backups: [][]string{{}, {}}},
		{name: "prev with another partition count ignored",
			prev:    Assignment{Partitions: 2, Actives: []string{"n1", "n1"}, Standbys: [][]string{{"n0"}, {"n0"}}},
			members: memberNames(2), partitions: 4, standbys: 1,
			actives: []string{"n0", "n1", "n0", "n1"}},
		{name: "leaver's actives go to their standbys",
			prev: Assignment{Generation: 7, Partitions: 6,
				Actives:  []string{"a", "b", "c", "a", "b", "c"},
				Standbys: [][]string{{"b"}, {"c"}, {"a"}, {"b"}, {"c"}, {"b"}}},
			members: []string{"a", "b"}, partitions: 6, standbys: 1,
			actives: []string{"a", "b", "a", "a", "b", "b"},
			backups: [][]string{{"b"}, {"a"}, {"b"}, {"b"}, {"a"}, {"a"}}},
		{name: "overloaded owner gives up what its standbys can take",
			prev: Assignment{Partitions: 4,
				Actives:  []string{"a", "a", "a", "b"},
				Standbys: [][]string{{"b"}, {"b"}, {"c"}, {"a"}}},
			members: []string{"a", "b", "c"}, partitions: 4, standbys: 1,
			actives: []string{"a", "a", "c", "b"}},
		{name: "invalid prev names are ignored",
			prev: Assignment{Partitions: 3,
				Actives:  []string{"gone", "", "n0"},
				Standbys: [][]string{{"n1", "n1", "gone"}, {"n0"}}},
			members: memberNames(2), partitions: 3, standbys: 1,
			actives: []string{"n1", "n0", "n0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Assign(tc.prev, tc.members, tc.partitions, tc.standbys)
			mustValidateAssignment(t, a, tc.members)
			if a.Generation != tc.prev.Generation+1 {
				t.Errorf("generation %d, want %d", a.Generation, tc.prev.Generation+1)
			}
			if tc.actives != nil && !slices.Equal(a.Actives, tc.actives) {
				t.Errorf("actives %q, want %q", a.Actives, tc.actives)
			}
			if tc.backups != nil && !a.Equal(Assignment{Partitions: a.Partitions, Actives: a.Actives, Standbys: tc.backups}) {
				t.Errorf("standbys %q, want %q", a.Standbys, tc.backups)
			}
			s := min(max(tc.standbys, 0), max(len(normalizeMembers(tc.members))-1, 0))
			for p, bs := range a.Standbys {
				if len(bs) != s {
					t.Errorf("partition %d has %d standbys, want %d", p, len(bs), s)
				}
			}
			checkAssignPromotions(t, tc.prev, a, tc.members)
		})
	}
}

// TestAssignRejoin is Faust's fs#93: a member that leaves and comes back with
// the same name gets its share again, taken from the most loaded only.
func TestAssignRejoin(t *testing.T) {
	all := memberNames(3)
	a := Assign(Assignment{}, all, 8, 1)
	b := Assign(a, all[:2], 8, 1)
	mustValidateAssignment(t, b, all[:2])
	if got := b.ActivesOf("n2"); got != nil {
		t.Fatalf("n2 left but owns %v", got)
	}
	c := Assign(b, all, 8, 1)
	mustValidateAssignment(t, c, all)
	got := len(c.ActivesOf("n2"))
	if got < 2 {
		t.Fatalf("rejoined n2 owns %d actives, want 2 or 3", got)
	}
	if moved := activesMoved(b, c, nameSet(all[:2])); moved != got {
		t.Fatalf("%d actives moved for a join that receives %d", moved, got)
	}
}

// TestAssignStable: a valid prev comes back unchanged, whatever the
// order and duplicates of members, from Assign's shortcut and from the flows
// it skips.
func TestAssignStable(t *testing.T) {
	for _, tc := range []struct{ m, p, s int }{{1, 1, 0}, {3, 8, 1}, {4, 4, 3}, {5, 3, 2}, {16, 1024, 2}} {
		a := Assign(Assignment{Generation: 41}, memberNames(tc.m), tc.p, tc.s)
		members := append(memberNames(tc.m), memberNames(tc.m)...)
		slices.Reverse(members)
		b := Assign(a, members, tc.p, tc.s)
		if !b.Equal(a) || b.Generation != 43 {
			t.Errorf("M=%d P=%d S=%d: placement changed or generation %d", tc.m, tc.p, tc.s, b.Generation)
		}
		if c := assignByFlows(a, members, tc.p, tc.s); !c.Equal(a) {
			t.Errorf("M=%d P=%d S=%d: the flows change a valid prev", tc.m, tc.p, tc.s)
		}
	}
	// A valid prev that Assign would not have produced is kept too.
	prev := Assignment{Partitions: 4,
		Actives:  []string{"c", "a", "a", "b"},
		Standbys: [][]string{{"a", "b"}, {"b", "c"}, {"b", "c"}, {"a", "c"}}}
	mustValidateAssignment(t, prev, []string{"a", "b", "c"})
	if got := assignByFlows(prev, []string{"a", "b", "c"}, 4, 2); !got.Equal(prev) {
		t.Errorf("valid prev changed:\n%+v\n%+v", prev, got)
	}
}

// assignByFlows is Assign without its shortcut for a valid prev.
func assignByFlows(prev Assignment, members []string, partitions, standbys int) Assignment {
	next := Assign(Assignment{Generation: prev.Generation}, members, partitions, standbys)
	if names := normalizeMembers(members); len(names) > 0 && next.Partitions > 0 {
		placeByFlows(&next, prev, names, min(max(standbys, 0), len(names)-1))
	}
	return next
}

func TestAssignmentHelpers(t *testing.T) {
	a := Assignment{Partitions: 3,
		Actives:  []string{"a", "b", "a"},
		Standbys: [][]string{{"b", "c"}, {"a", "c"}, {"b", "c"}}}
	if got := a.ActivesOf("a"); !slices.Equal(got, []int{0, 2}) {
		t.Errorf("ActivesOf(a) = %v", got)
	}
	if got := a.StandbysOf("c"); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("StandbysOf(c) = %v", got)
	}
	if got := a.StandbysOf("x"); got != nil {
		t.Errorf("StandbysOf(x) = %v", got)
	}
	if a.Owner(1) != "b" || a.Owner(-1) != "" || a.Owner(3) != "" {
		t.Errorf("Owner wrong")
	}
	b := a
	b.Generation = 9
	b.Standbys = slices.Clone(a.Standbys)
	if !a.Equal(b) {
		t.Errorf("Equal must ignore the generation")
	}
	b.Standbys[1] = []string{"c"}
	if a.Equal(b) {
		t.Errorf("Equal must compare standbys")
	}
	if !(Assignment{Partitions: 1, Actives: []string{""}, Standbys: [][]string{nil}}).Equal(
		Assignment{Partitions: 1, Actives: []string{""}, Standbys: [][]string{{}}}) {
		t.Errorf("nil and empty standbys must be equal")
	}
}

func TestValidateRejects(t *testing.T) {
	good := func() Assignment {
		return Assignment{Partitions: 4,
			Actives:  []string{"a", "b", "c", "a"},
			Standbys: [][]string{{"b"}, {"c"}, {"a"}, {"c"}}}
	}
	members := []string{"a", "b", "c"}
	mustValidateAssignment(t, good(), members)
	for name, spoil := range map[string]func(*Assignment){
		"short actives":       func(a *Assignment) { a.Actives = a.Actives[:3] },
		"short standbys":      func(a *Assignment) { a.Standbys = a.Standbys[:3] },
		"unknown active":      func(a *Assignment) { a.Actives[0] = "x" },
		"unassigned":          func(a *Assignment) { a.Actives[0] = "" },
		"unbalanced actives":  func(a *Assignment) { a.Actives[1] = "a" },
		"active as standby":   func(a *Assignment) { a.Standbys[0] = []string{"a"} },
		"uneven standbys":     func(a *Assignment) { a.Standbys[0] = []string{"b", "c"} },
		"duplicate standby":   func(a *Assignment) { a.Standbys = [][]string{{"b", "b"}, {"a", "c"}, {"a", "b"}, {"b", "c"}} },
		"unsorted standbys":   func(a *Assignment) { a.Standbys = [][]string{{"c", "b"}, {"a", "c"}, {"a", "b"}, {"b", "c"}} },
		"unknown standby":     func(a *Assignment) { a.Standbys[0] = []string{"x"} },
		"unbalanced standbys": func(a *Assignment) { a.Standbys[1], a.Standbys[3] = []string{"a"}, []string{"b"} },
		"too many standbys": func(a *Assignment) {
			a.Standbys = [][]string{{"b", "c", "d"}, {"a", "c", "d"}, {"a", "b", "d"}, {"b", "c", "d"}}
		},
	} {
		a := good()
		spoil(&a)
		if err := a.Validate(members); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
	if err := (Assignment{Partitions: 1, Actives: []string{"a"}, Standbys: [][]string{{}}}).Validate(nil); err == nil {
		t.Errorf("an active without members must be rejected")
	}
}

// TestAssignHistories runs random membership histories: joins, leaves,
// crashes of several members at once, rejoins under the same name and
// changes of S. After every step:
//   - Validate passes and the generation is prev's + 1;
//   - Assign is deterministic (member order and duplicates do not matter) and
//     stable (Assign of its own result changes nothing);
//   - the actives moved among members present before and after are the
//     minimum for the balance; on a pure join that is exactly what the new
//     members receive, and on a pure leave it is zero;
//   - no moving active skipped an eligible standby (checkAssignPromotions).
//
// It logs how many actives of departed members found a standby to promote.
// TestAssignOptimal checks the stronger optimality claims on small cases.
func TestAssignHistories(t *testing.T) {
	steps, seeds := 300, 40
	if testing.Short() {
		seeds = 5
	}
	pool := memberNames(24)
	orphans, promoted := 0, 0
	defer func() { t.Logf("%d of %d actives of departed members with a standby went to one", promoted, orphans) }()
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 0xa551))
		partitions, standbys := 1+rng.IntN(64), rng.IntN(4)
		members := slices.Clone(pool[:1+rng.IntN(6)])
		a := Assign(Assignment{}, members, partitions, standbys)
		mustValidateAssignment(t, a, members)
		for step := range steps {
			before := members
			members, standbys = randomMembershipStep(rng, pool, members, standbys)
			next := Assign(a, members, partitions, standbys)
			ctx := fmt.Sprintf("seed %d step %d P=%d S=%d %v → %v", seed, step, partitions, standbys, before, members)
			checkAssignStep(t, ctx, a, next, before, members, standbys, rng)
			o, p := promotions(a, next, members)
			orphans, promoted = orphans+o, promoted+p
			a = next
		}
	}
}

// promotions returns how many actives of prev lost their owner and had a
// standby among members, and how many of those went to one.
func promotions(prev, next Assignment, members []string) (orphans, promoted int) {
	present := nameSet(members)
	for p, o := range prev.Actives {
		if present[o] || !slices.ContainsFunc(prev.Standbys[p], func(b string) bool { return present[b] }) {
			continue
		}
		orphans++
		if slices.Contains(prev.Standbys[p], next.Actives[p]) {
			promoted++
		}
	}
	return orphans, promoted
}

// randomMembershipStep changes the membership (and rarely S) at random.
func randomMembershipStep(rng *rand.Rand, pool, members []string, standbys int) ([]string, int) {
	present := nameSet(members)
	var absent []string
	for _, n := range pool {
		if !present[n] {
			absent = append(absent, n)
		}
	}
	rng.Shuffle(len(absent), func(i, j int) { absent[i], absent[j] = absent[j], absent[i] })
	next := slices.Clone(members)
	rng.Shuffle(len(next), func(i, j int) { next[i], next[j] = next[j], next[i] })
	switch op := rng.IntN(10); {
	case op < 3: // join 1 to 3
		next = append(next, absent[:min(len(absent), 1+rng.IntN(3))]...)
	case op < 6: // leave 1 or 2
		next = next[min(len(next), 1+rng.IntN(2)):]
	case op < 7: // crash of up to half the members
		next = next[min(len(next), 1+rng.IntN(max(1, len(next)/2))):]
	case op < 8: // leaves and joins at once
		next = append(next[min(len(next), rng.IntN(3)):], absent[:min(len(absent), rng.IntN(3))]...)
	case op < 9: // nothing changes
	default:
		standbys = rng.IntN(4)
	}
	return next, standbys
}

// checkAssignStep checks the step prev → next of TestAssignHistories.
func checkAssignStep(t *testing.T, ctx string, prev, next Assignment, before, after []string, standbysArg int, rng *rand.Rand) {
	t.Helper()
	if err := next.Validate(after); err != nil {
		t.Fatalf("%s: %v", ctx, err)
	}
	if s := min(standbysArg, max(len(nameSet(after))-1, 0)); next.Partitions > 0 && standbysPerPartition(next) != s {
		t.Fatalf("%s: %d standbys per partition, want %d", ctx, standbysPerPartition(next), s)
	}
	if next.Generation != prev.Generation+1 {
		t.Fatalf("%s: generation %d after %d", ctx, next.Generation, prev.Generation)
	}
	shuffled := append(slices.Clone(after), after...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if again := Assign(prev, shuffled, next.Partitions, standbysArg); !again.Equal(next) {
		t.Fatalf("%s: not deterministic", ctx)
	}
	if again := assignByFlows(next, after, next.Partitions, standbysArg); !again.Equal(next) {
		t.Fatalf("%s: not stable:\n%+v\n%+v", ctx, next, again)
	}
	was, is := nameSet(before), nameSet(after)
	stay := map[string]bool{}
	for n := range was {
		if is[n] {
			stay[n] = true
		}
	}
	moved := activesMoved(prev, next, stay)
	if want := minActiveMoves(prev, after, next.Partitions); moved != want {
		t.Fatalf("%s: %d actives moved, minimum %d", ctx, moved, want)
	}
	joined, left := len(is) > len(stay), len(was) > len(stay)
	if joined && !left && len(stay) > 0 {
		received := 0
		for p, o := range next.Actives {
			if !was[o] {
				received++
			} else if o != prev.Actives[p] {
				t.Fatalf("%s: join gave partition %d to %q, which was there before", ctx, p, o)
			}
		}
		if moved != received {
			t.Fatalf("%s: join moved %d, new members received %d", ctx, moved, received)
		}
	}
	if left && !joined && moved != 0 {
		t.Fatalf("%s: leave moved %d actives of staying members", ctx, moved)
	}
	checkAssignPromotions(t, prev, next, after)
}

// standbysPerPartition returns the number of standbys per partition of a.
func standbysPerPartition(a Assignment) int {
	if len(a.Standbys) == 0 {
		return 0
	}
	return len(a.Standbys[0])
}

// TestAssignOptimal compares Assign with an exhaustive search on small
// cases (P ≤ 5, M ≤ 4), from valid and from arbitrary prevs:
//   - actives: among balanced placements, Assign moves the fewest actives of
//     members still present, and among those promotes the most standbys;
//   - standbys: among balanced standby placements for Assign's actives, it
//     has the fewest actives that would not go to their standby if their
//     owner failed (one standby per partition, failoverMisses), then keeps
//     the most still valid standbys of prev, then uses the most former
//     owners of moved actives.
func TestAssignOptimal(t *testing.T) {
	pool := []string{"a", "b", "c", "d", "e"}
	rng := rand.New(rand.NewPCG(7, 11))
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	for n := range cases {
		partitions, standbys := 1+rng.IntN(5), rng.IntN(4)
		prev := randomPrevAssignment(rng, pool, partitions, standbys, n%2 == 0)
		members := slices.Clone(pool)
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		members = members[:1+rng.IntN(4)]
		next := Assign(prev, members, partitions, standbys)
		mustValidateAssignment(t, next, members)
		h := readPrev(prev, normalizeMembers(members), partitions)
		got, want := activePlacementScore(h, normalizeMembers(members), next.Actives), bestActivePlacement(h, normalizeMembers(members), partitions)
		if got != want {
			t.Fatalf("case %d: actives (moves, -promotions) %v, best %v\nprev %+v\nmembers %v\nnext %+v", n, got, want, prev, members, next)
		}
		gotS, wantS := standbyPlacementScore(h, next, normalizeMembers(members)), bestStandbyPlacement(h, next, normalizeMembers(members))
		if gotS != wantS {
			t.Fatalf("case %d: standbys (failover misses, -kept, -former owners) %v, best %v\nprev %+v\nmembers %v\nnext %+v", n, gotS, wantS, prev, members, next)
		}
	}
}

// randomPrev returns the result of a few random Assign steps if valid, and
// otherwise random names (members or not, duplicated, "") in random places.
func randomPrevAssignment(rng *rand.Rand, pool []string, partitions, standbys int, valid bool) Assignment {
	if valid {
		var a Assignment
		for range 1 + rng.IntN(3) {
			a = Assign(a, pool[:rng.IntN(len(pool)+1)], partitions, standbys)
		}
		return a
	}
	names := append([]string{"", "x"}, pool...)
	a := Assignment{Partitions: partitions, Actives: make([]string, partitions), Standbys: make([][]string, partitions)}
	for p := range partitions {
		a.Actives[p] = names[rng.IntN(len(names))]
		for range rng.IntN(4) {
			a.Standbys[p] = append(a.Standbys[p], names[rng.IntN(len(names))])
		}
	}
	return a
}

// assignScore is compared lexicographically: lower is better.
type assignScore [2]int

func (s assignScore) less(o assignScore) bool { return s[0] < o[0] || (s[0] == o[0] && s[1] < o[1]) }

// activeScore is (moves, -promotions) of the actives owners (names).
func activePlacementScore(h prevPlacement, names, owners []string) assignScore {
	var s assignScore
	for p, o := range owners {
		j, _ := slices.BinarySearch(names, o)
		if h.owner[p] >= 0 && h.owner[p] != j {
			s[0]++
		}
		if h.owner[p] != j && slices.Contains(h.standbys[p], j) {
			s[1]--
		}
	}
	return s
}

// bestActives returns the best activeScore over all balanced placements.
func bestActivePlacement(h prevPlacement, names []string, partitions int) assignScore {
	best := assignScore{math.MaxInt, 0}
	owners := make([]string, partitions)
	var walk func(p int)
	walk = func(p int) {
		if p == partitions {
			a := Assignment{Partitions: partitions, Actives: owners, Standbys: make([][]string, partitions)}
			if a.validateActives(names, memberIndex(names)) == nil {
				if s := activePlacementScore(h, names, owners); s.less(best) {
					best = s
				}
			}
			return
		}
		for _, n := range names {
			owners[p] = n
			walk(p + 1)
		}
	}
	walk(0)
	return best
}

func memberIndex(names []string) map[string]int {
	index := map[string]int{}
	for i, n := range names {
		index[n] = i
	}
	return index
}

// standbyScore is compared lexicographically: lower is better.
type standbyScore [3]int

func (s standbyScore) less(o standbyScore) bool { return slices.Compare(s[:], o[:]) < 0 }

// standbyPlacementScore is (failover misses, -kept, -former owners) of a's
// standbys for the sorted members names; misses count only with one
// standby per partition (failoverMisses).
func standbyPlacementScore(h prevPlacement, a Assignment, names []string) standbyScore {
	var s standbyScore
	if standbysPerPartition(a) == 1 {
		s[0] = failoverMisses(a, names)
	}
	for p, bs := range a.Standbys {
		for _, b := range bs {
			j, _ := slices.BinarySearch(names, b)
			if slices.Contains(h.standbys[p], j) {
				s[1]--
			} else if h.owner[p] == j {
				s[2]--
			}
		}
	}
	return s
}

// failoverMisses counts, over every member o of failing (all of members
// when empty), the actives of o that Assign does not give to one of their
// standbys when o alone fails.
func failoverMisses(a Assignment, members []string, failing ...string) int {
	if len(failing) == 0 {
		failing = members
	}
	misses := 0
	for _, o := range failing {
		rest := slices.DeleteFunc(slices.Clone(members), func(n string) bool { return n == o })
		next := Assign(a, rest, a.Partitions, standbysPerPartition(a))
		for p, owner := range a.Actives {
			if owner == o && !slices.Contains(a.Standbys[p], next.Actives[p]) {
				misses++
			}
		}
	}
	return misses
}

// bestStandbys returns the best standbyScore over all balanced standby
// placements for a's actives and standbys per partition.
func bestStandbyPlacement(h prevPlacement, a Assignment, members []string) standbyScore {
	s := standbysPerPartition(a)
	best := standbyScore{math.MaxInt, 0, 0}
	try := Assignment{Partitions: a.Partitions, Actives: a.Actives, Standbys: make([][]string, a.Partitions)}
	var walk func(p int)
	walk = func(p int) {
		if p == a.Partitions {
			if try.validateStandbys(members, memberIndex(members)) == nil {
				if sc := standbyPlacementScore(h, try, members); sc.less(best) {
					best = sc
				}
			}
			return
		}
		for _, bs := range standbySubsets(members, a.Actives[p], s) {
			try.Standbys[p] = bs
			walk(p + 1)
		}
	}
	walk(0)
	return best
}

// subsets returns the sorted k-subsets of names without except.
func standbySubsets(names []string, except string, k int) [][]string {
	if k == 0 {
		return [][]string{{}}
	}
	var out [][]string
	for i, n := range names {
		if n == except {
			continue
		}
		for _, rest := range standbySubsets(names[i+1:], except, k-1) {
			out = append(out, append([]string{n}, rest...))
		}
	}
	return out
}

// FuzzAssign decodes a prev from JSON (any content, as a member receiving
// one from the wire would) and checks that Assign never panics, returns a
// valid and stable assignment, the same as its flows without the shortcut
// for a valid prev, and that Validate of the input never panics.
func FuzzAssign(f *testing.F) {
	seed, _ := json.Marshal(Assign(Assignment{}, memberNames(3), 8, 1))
	f.Add(seed, "n0,n1,n3", uint8(8), uint8(1))
	f.Add(seed, "n0,n1,n2", uint8(8), uint8(2))
	f.Add(seed, "n2,n0,n1,n0", uint8(8), uint8(1))
	f.Add([]byte(`{"partitions":3,"actives":["a","a","a"],"standbys":[["a","b","b"],[],null]}`), "a,b,,c", uint8(3), uint8(3))
	f.Add([]byte(`{}`), "", uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, prevJSON []byte, memberList string, partitions, standbys uint8) {
		var prev Assignment
		_ = json.Unmarshal(prevJSON, &prev)
		members := strings.Split(memberList, ",")
		if len(members) > 64 {
			members = members[:64]
		}
		_ = prev.Validate(members)
		p, s := int(partitions), int(standbys%8)
		next := Assign(prev, members, p, s)
		if err := next.Validate(members); err != nil {
			t.Fatalf("%v\nprev %+v\nnext %+v", err, prev, next)
		}
		if flows := assignByFlows(prev, members, p, s); !flows.Equal(next) {
			t.Fatalf("the shortcut and the flows differ:\nprev %+v\nnext %+v\nflows %+v", prev, next, flows)
		}
		if again := assignByFlows(next, members, p, s); !again.Equal(next) {
			t.Fatalf("not stable:\n%+v\n%+v", next, again)
		}
		if err := prev.Validate(members); err == nil && prev.Partitions == p &&
			standbysPerPartition(prev) == min(s, max(len(normalizeMembers(members))-1, 0)) && !next.Equal(prev) {
			t.Fatalf("valid prev changed:\n%+v\n%+v", prev, next)
		}
	})
}

// BenchmarkAssign measures Assign for P = 1024 partitions and M = 16 members
// with one standby: from nothing, from a valid prev for the same members
// (the shortcut), after a leave and after a join.
func BenchmarkAssign(b *testing.B) {
	const partitions, standbys = 1024, 1
	all := memberNames(16)
	full := Assign(Assignment{}, all, partitions, standbys)
	short := Assign(full, all[1:], partitions, standbys)
	for _, bc := range []struct {
		name    string
		prev    Assignment
		members []string
	}{
		{"fresh", Assignment{}, all},
		{"same", full, all},
		{"leave", full, all[1:]},
		{"join", short, all},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				Assign(bc.prev, bc.members, partitions, standbys)
			}
		})
	}
}

// ExampleAssign places 6 partitions on three nodes with one standby each,
// then n2 leaves: its actives 2 and 5 go to their standbys n0 and n1, nothing
// else moves, and the partitions that had n2 as standby get another one.
func ExampleAssign() {
	a := Assign(Assignment{}, []string{"n0", "n1", "n2"}, 6, 1)
	b := Assign(a, []string{"n1", "n0"}, 6, 1)
	for _, x := range []Assignment{a, b} {
		fmt.Printf("generation %d\n", x.Generation)
		for p := range x.Partitions {
			fmt.Printf("  partition %d: active %s, standbys %v\n", p, x.Owner(p), x.Standbys[p])
		}
	}
	fmt.Println("n0 owns", b.ActivesOf("n0"), "and stands by for", b.StandbysOf("n0"))
	// Output:
	// generation 1
	//   partition 0: active n0, standbys [n1]
	//   partition 1: active n1, standbys [n2]
	//   partition 2: active n2, standbys [n0]
	//   partition 3: active n0, standbys [n2]
	//   partition 4: active n1, standbys [n0]
	//   partition 5: active n2, standbys [n1]
	// generation 2
	//   partition 0: active n0, standbys [n1]
	//   partition 1: active n1, standbys [n0]
	//   partition 2: active n0, standbys [n1]
	//   partition 3: active n0, standbys [n1]
	//   partition 4: active n1, standbys [n0]
	//   partition 5: active n1, standbys [n0]
	// n0 owns [0 2 3] and stands by for [1 4 5]
}

// TestAssignmentWellFormed: an assignment read from the group bucket is
// applied only if its shape fits its partition count, whoever wrote it (a
// forged one with more actives than partitions named partitions that do
// not exist).
func TestAssignmentWellFormed(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Assignment
		ok   bool
	}{
		{"a leader's", Assign(Assignment{}, []string{"a", "b"}, 4, 1), true},
		{"a leader's without standbys", Assign(Assignment{}, []string{"a"}, 4, 0), true},
		{"a leader's without members", Assign(Assignment{}, nil, 4, 1), true},
		{"empty", Assignment{}, true},
		{"more actives than partitions", Assignment{Partitions: 2, Actives: []string{"a", "a", "a"}, Standbys: make([][]string, 2)}, false},
		{"fewer standby lists", Assignment{Partitions: 2, Actives: []string{"a", "b"}, Standbys: make([][]string, 1)}, false},
		{"negative", Assignment{Partitions: -1}, false},
		{"active is its own standby", Assignment{Partitions: 1, Actives: []string{"a"}, Standbys: [][]string{{"a"}}}, false},
		{"unsorted standbys", Assignment{Partitions: 1, Actives: []string{"a"}, Standbys: [][]string{{"c", "b"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.WellFormed()
			if (err == nil) != tc.ok {
				t.Fatalf("WellFormed(%+v) = %v; want ok=%v", tc.a, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}
