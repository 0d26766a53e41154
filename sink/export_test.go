package sink

import "context"

// SetHandedOverHook lets tests wait until a Put's items are all with the
// batcher before they move the clock, so a linger cannot split them.
func SetHandedOverHook[T any](s *DynamoDB[T], f func(ctx context.Context, n int)) { s.handedOver = f }

// SetClosingHook lets tests act once Close has refused new Puts and before
// it waits for the running ones.
func SetClosingHook[T any](s *DynamoDB[T], f func()) { s.closing = f }

// PendingItems returns how many items wait in the batcher for a call.
func PendingItems[T any](s *DynamoDB[T]) int { return s.batcher.Pending() }
