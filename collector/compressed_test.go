package collector

import (
	"fmt"
	"os"
	"testing"
)

// While the agent is down a read file is rotated and compressed, and a new
// file may take its inode number; the compressed file is still recognised by
// its content, so it is neither read again nor taken for new, and every file
// written meanwhile is read once.
func TestCompressedWhileStoppedWithInodeReuse(t *testing.T) {
	n := newNode(t)
	live := n.container("default", "gz", "app")
	appendFile(t, live, numberedLines("z", 0, 3000))
	cfg := n.config()
	first := newCapture()
	r := start(t, cfg, first)
	waitFor(t, "all", func() bool { return first.distinct() == 3000 })
	r.stop()

	rotated := live + ".20261126-120000"
	if err := os.Rename(live, rotated); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 3000, 5000))
	y := live + ".20261126-120100"
	if err := os.Rename(live, y); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 5000, 5200))
	if err := gzipFile(rotated); err != nil { // frees the first file's inode
		t.Fatal(err)
	}

	second := newCapture()
	start(t, cfg, second)
	// Rotate again right away: the next new file may reuse the freed inode.
	appendFile(t, live, numberedLines("z", 5200, 5300))
	if err := os.Rename(live, live+".20261126-120200"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, numberedLines("z", 5300, 5400))
	if err := gzipFile(y); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every new line", func() bool { return second.distinct() >= 2400 })
	if dups := second.expectLines(t, "z", 3000, 5400); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for i := 0; i < 3000; i += 500 {
		if second.count(fmt.Sprintf("line z-%d", i)) != 0 {
			t.Fatalf("line z-%d, acknowledged before the stop, was read again", i)
		}
	}
}
