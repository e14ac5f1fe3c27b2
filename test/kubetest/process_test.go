package kubetest

import "testing"

func TestTailLines(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, "(empty)"},
		{"a\nb\n", 3, "a\nb"},
		{"a\nb\nc\nd\n", 2, "... (2 earlier lines)\nc\nd"},
		{"a\nb", 2, "a\nb"},
	}
	for _, tc := range tests {
		if got := tailLines([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
