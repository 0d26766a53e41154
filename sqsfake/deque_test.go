package sqsfake

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDequeWrapsAndRemoves(t *testing.T) {
	var d deque[int]
	contents := func() []int {
		var out []int
		for i := range d.len() {
			out = append(out, d.at(i))
		}
		return out
	}
	// Move the head so that the ring wraps before it grows.
	for i := range 10 {
		d.push(i)
	}
	for range 8 {
		d.pop()
	}
	for i := 10; i < 30; i++ {
		d.push(i)
	}
	assert.Equal(t, 22, d.len())
	assert.Equal(t, 8, d.at(0))
	assert.Equal(t, 29, d.at(21))

	d.removeAt(2) // 10
	d.removeAt(0) // 8
	assert.Equal(t, []int{9, 11, 12, 13}, contents()[:4])
	assert.Equal(t, 20, d.len())
	for _, want := range []int{9, 11} {
		v, ok := d.pop()
		assert.True(t, ok)
		assert.Equal(t, want, v)
	}
	for d.len() > 0 {
		d.pop()
	}
	_, ok := d.pop()
	assert.False(t, ok)
}
