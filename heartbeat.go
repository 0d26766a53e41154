package sqspool

import (
	"context"
	"time"
)

// watch is the pool's watchdog. Every tick it
//   - cancels the context of each handler whose deadline has passed (handler
//     contexts arm no timer of their own; see handlerContext), and
//   - with the heartbeat on, keeps the messages this process holds invisible
//     while their handlers run (or while they wait for a worker), so that a
//     slow handler's message is not delivered to another consumer
//     mid-flight: it extends, in batches, each message whose visibility
//     would end before the next tick or so. A message whose handler has
//     finished is never extended: the extension would race its delete. Nor
//     is one past its handler's deadline: a handler that ignores its
//     cancelled context does not keep its message from everyone else.
func (p *Pool) watch(ctx context.Context) {
	vis := p.queue.visibility
	tick := p.tick
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
			state := rec.state.Load()
			if state == recFinished {
				continue
			}
			if !now.Before(rec.deadlineAt(state == recRunning)) {
				if state == recRunning {
					rec.ctx.cancel(context.DeadlineExceeded)
				}
				continue
			}
			if p.cfg.heartbeat && rec.visibleAt().Sub(now) <= p.ahead {
				p.deq.extend(rec, vis)
			}
		}
		p.disp.releaseDone(now, p.ahead)
		p.disp.pruneGroups(now)
		p.disp.pruneGone(now)
	}
}

// watchTick is a third of the visibility timeout, so that extensions stay
// ahead of it, and at most a twentieth of the handler timeout, so that a
// handler is cancelled within 5% of its deadline.
func watchTick(visibility, handlerTimeout time.Duration) time.Duration {
	return max(min(visibility/3, handlerTimeout/20), 100*time.Millisecond)
}
