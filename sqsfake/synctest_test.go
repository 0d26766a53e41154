package sqsfake_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sqspool/sqspool/sqsfake"
)

// A user's test gets fake time for the fake from testing/synctest: its
// visibility timeouts and long polls follow the bubble's clock, so no clock
// needs to be part of the fake's API.
func TestFakeFollowsSynctestTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		fake := sqsfake.New()
		url := fake.MustCreateQueue("q", map[string]string{"VisibilityTimeout": "30"})
		fake.MustSend(url, "x")
		receive := func(wait int32) []string {
			out, err := fake.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(url), WaitTimeSeconds: wait,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
			})
			require.NoError(t, err)
			var counts []string
			for _, m := range out.Messages {
				counts = append(counts, m.Attributes["ApproximateReceiveCount"])
			}
			return counts
		}
		assert.Equal(t, []string{"1"}, receive(0))
		assert.Empty(t, receive(0), "in flight")
		time.Sleep(30 * time.Second) // fake time: returns at once
		assert.Equal(t, []string{"2"}, receive(0), "visible again after its visibility timeout")

		// A long poll waits on the bubble's clock and takes what is sent.
		got := make(chan []string)
		go func() { got <- receive(20) }()
		synctest.Wait() // the receiver is waiting
		fake.MustSend(url, "y")
		assert.Equal(t, []string{"1"}, <-got)
	})
}
