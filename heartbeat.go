package sqspool

import (
	"context"
	"time"
)

// heartbeat keeps the messages this process holds invisible while their
// handlers run (or while they wait behind their FIFO group), so that a slow
// handler's message is not delivered to another consumer mid-flight. Every
// tick it extends, in batches, each message whose visibility would end
// before the next tick or so. A message whose handler has finished is never
// extended: the extension would race its delete.
func (p *Pool) heartbeat(ctx context.Context) {
	vis := p.queue.visibility
	tick := max(vis/3, time.Second)
	for {
		t := p.cfg.clock.NewTimer(tick)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		now := p.cfg.clock.Now()
		for _, rec := range p.disp.inFlight() {
			if rec.state.Load() != recFinished && rec.visibleAt().Sub(now) <= tick+vis/3 {
				p.deq.extend(rec, vis)
			}
		}
		p.disp.pruneGroups(now)
	}
}
