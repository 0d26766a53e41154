package lambdasqspool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestQueueURLFromTheEventSourceARN(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:sqs:us-east-1:123456789012:orders":       "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
		"arn:aws:sqs:eu-west-1:123456789012:orders.fifo":  "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
		"arn:aws-cn:sqs:cn-north-1:123456789012:orders":   "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/orders",
		"arn:aws-us-gov:sqs:us-gov-west-1:123456789012:q": "https://sqs.us-gov-west-1.amazonaws.com/123456789012/q",
		"not-an-arn": "not-an-arn",
		"arn:aws:sns:us-east-1:123456789012:topic:extra:xx": "arn:aws:sns:us-east-1:123456789012:topic:extra:xx",
	} {
		assert.Equal(t, want, queueURL(arn), arn)
	}
}

func TestVisibilitySecondsRoundUpAndStayUnderTheCap(t *testing.T) {
	assert.Equal(t, int32(0), visibilitySeconds(0))
	assert.Equal(t, int32(1), visibilitySeconds(300*time.Millisecond))
	assert.Equal(t, int32(30), visibilitySeconds(30*time.Second))
	assert.Equal(t, int32(31), visibilitySeconds(30*time.Second+time.Millisecond))
	assert.Equal(t, int32(43200), visibilitySeconds(24*time.Hour))
}
