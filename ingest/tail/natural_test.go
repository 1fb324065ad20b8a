package tail

import "testing"

func TestNaturalLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"data/access-9.log", "data/access-10.log", true},
		{"data/access-10.log", "data/access-9.log", false},
		{"data/access-09.log", "data/access-10.log", true},
		{"app-2026-12-01.log", "app-2026-12-02.log", true},
		{"a.log", "a.log", false},
		{"a", "a1", true},
		{"b1", "a2", false},
	} {
		if got := naturalLess(c.a, c.b); got != c.want {
			t.Errorf("naturalLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
