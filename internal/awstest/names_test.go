package awstest

import (
	"regexp"
	"strings"
	"testing"
)

// Runs without AWS endpoints: queue and table names must be valid for both
// services, unique, and within SQS's 80 characters (".fifo" included).
func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]+-[0-9a-f]{12}$`)
	long := strings.Repeat("x", 200)
	for _, prefix := range []string{"", "emu-batch", "Test/With spaces.and.dots", long} {
		seen := map[string]bool{}
		for range 100 {
			name := UniqueName(prefix, "sqspool-test", 80-len(".fifo"))
			if !valid.MatchString(name) {
				t.Fatalf("UniqueName(%q) = %q: not a valid queue name", prefix, name)
			}
			if len(name+".fifo") > 80 {
				t.Fatalf("UniqueName(%q) = %q: %d characters, too long for a FIFO queue name", prefix, name, len(name))
			}
			if seen[name] {
				t.Fatalf("UniqueName(%q) repeated %q", prefix, name)
			}
			seen[name] = true
		}
	}
	if got := UniqueName("", "sqspool-test", 255); !strings.HasPrefix(got, "sqspool-test-") {
		t.Errorf("UniqueName with empty prefix = %q, want the default prefix", got)
	}
}

func TestIsFIFO(t *testing.T) {
	cases := []struct {
		attrs map[string]string
		want  bool
	}{
		{nil, false},
		{map[string]string{"VisibilityTimeout": "30"}, false},
		{map[string]string{"FifoQueue": "false"}, false},
		{map[string]string{"FifoQueue": "true"}, true},
		{map[string]string{"FifoQueue": "TRUE"}, true},
	}
	for _, c := range cases {
		if got := isFIFO(c.attrs); got != c.want {
			t.Errorf("isFIFO(%v) = %v, want %v", c.attrs, got, c.want)
		}
	}
}
