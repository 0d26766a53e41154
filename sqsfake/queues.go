package sqsfake

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func (f *Fake) createQueue(in *sqs.CreateQueueInput, _ *Fault) (*sqs.CreateQueueOutput, error) {
	if err := requireParams("CreateQueueInput", required("QueueName", in.QueueName)); err != nil {
		return nil, err
	}
	name := *in.QueueName
	fifo := false
	if v, ok := in.Attributes["FifoQueue"]; ok {
		if v != "true" && v != "false" {
			return nil, errInvalidAttributeValue("Invalid value for the parameter FifoQueue.")
		}
		fifo = v == "true"
	}
	if err := checkQueueName(name, fifo); err != nil {
		return nil, err
	}
	cfg, err := defaultConfig(fifo).withAttributes(in.Attributes)
	if err != nil {
		return nil, err
	}
	if err := f.checkDeadLetterTarget(name, &cfg); err != nil {
		return nil, err
	}
	for {
		// An existing queue is returned if the attributes given match
		// its own. The queue lock is never taken under f.mu.
		if q, _ := f.lookupName(name); q != nil {
			q.mu.Lock()
			same, err := q.cfg.withAttributes(in.Attributes)
			match := err == nil && same.equal(q.cfg)
			q.mu.Unlock()
			if !match {
				return nil, errQueueNameExists(name)
			}
			return &sqs.CreateQueueOutput{QueueUrl: ptr(q.url)}, nil
		}
		f.mu.Lock()
		if f.queues[name] != nil {
			f.mu.Unlock()
			continue
		}
		q := newQueue(name, f.QueueURL(name), f.QueueARN(name), f.queueSeq.Add(1), cfg, f.clock.Now())
		f.queues[name] = q
		f.mu.Unlock()
		return &sqs.CreateQueueOutput{QueueUrl: ptr(q.url)}, nil
	}
}

// checkDeadLetterTarget checks that a redrive policy names an existing
// queue, other than the queue itself, of the same type.
func (f *Fake) checkDeadLetterTarget(name string, cfg *queueConfig) error {
	if cfg.dlqARN == "" {
		return nil
	}
	dlq := f.lookupARN(cfg.dlqARN)
	switch {
	case dlq == nil:
		return errInvalidParameter("Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", cfg.redrivePolicy)
	case dlq.name == name:
		return errInvalidParameter("Value %s for parameter RedrivePolicy is invalid. Reason: A queue cannot be its own dead-letter queue.", cfg.redrivePolicy)
	case dlq.fifo != cfg.fifo:
		return errInvalidParameter("Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.", cfg.redrivePolicy)
	}
	return nil
}

func (f *Fake) deleteQueue(in *sqs.DeleteQueueInput, _ *Fault) (*sqs.DeleteQueueOutput, error) {
	if err := requireParams("DeleteQueueInput", required("QueueUrl", in.QueueUrl)); err != nil {
		return nil, err
	}
	q, err := f.lookupURL(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.queues[q.name] == q {
		delete(f.queues, q.name)
	}
	f.mu.Unlock()
	q.mu.Lock()
	q.gone = true
	q.purgeLocked()
	q.wakeLocked() // long polls return QueueDoesNotExist
	q.mu.Unlock()
	return &sqs.DeleteQueueOutput{}, nil
}

func (f *Fake) purgeQueue(in *sqs.PurgeQueueInput, _ *Fault) (*sqs.PurgeQueueOutput, error) {
	if err := requireParams("PurgeQueueInput", required("QueueUrl", in.QueueUrl)); err != nil {
		return nil, err
	}
	q, now, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	if q.purged && now.Sub(q.lastPurge) < purgeIntervalSeconds*time.Second {
		return nil, errPurgeInProgress(q.arn)
	}
	q.purgeLocked()
	q.purged, q.lastPurge = true, now
	return &sqs.PurgeQueueOutput{}, nil
}

func (f *Fake) getQueueURL(in *sqs.GetQueueUrlInput, _ *Fault) (*sqs.GetQueueUrlOutput, error) {
	if err := requireParams("GetQueueUrlInput", required("QueueName", in.QueueName)); err != nil {
		return nil, err
	}
	if in.QueueOwnerAWSAccountId != nil && *in.QueueOwnerAWSAccountId != f.account {
		return nil, errQueueDoesNotExist()
	}
	q, err := f.lookupName(*in.QueueName)
	if err != nil {
		return nil, err
	}
	return &sqs.GetQueueUrlOutput{QueueUrl: ptr(q.url)}, nil
}

func (f *Fake) getQueueAttributes(in *sqs.GetQueueAttributesInput, _ *Fault) (*sqs.GetQueueAttributesOutput, error) {
	if err := requireParams("GetQueueAttributesInput", required("QueueUrl", in.QueueUrl)); err != nil {
		return nil, err
	}
	q, _, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	out := &sqs.GetQueueAttributesOutput{}
	put := func(name string) {
		if v, ok := q.attributeLocked(name); ok {
			if out.Attributes == nil {
				out.Attributes = map[string]string{}
			}
			out.Attributes[name] = v
		}
	}
	for _, n := range in.AttributeNames {
		switch name := string(n); {
		case name == "All":
			for _, name := range queueAttributeNames {
				put(name)
			}
		case isQueueAttributeName(name):
			put(name)
		default:
			return nil, errInvalidAttributeName(name)
		}
	}
	return out, nil
}

func isQueueAttributeName(name string) bool {
	for _, n := range queueAttributeNames {
		if n == name {
			return true
		}
	}
	return false
}

func (f *Fake) setQueueAttributes(in *sqs.SetQueueAttributesInput, _ *Fault) (*sqs.SetQueueAttributesOutput, error) {
	if err := requireParams("SetQueueAttributesInput", required("QueueUrl", in.QueueUrl), requiredMap("Attributes", in.Attributes)); err != nil {
		return nil, err
	}
	q, now, err := f.lockQueue(*in.QueueUrl)
	if err != nil {
		return nil, err
	}
	defer q.mu.Unlock()
	cfg, err := q.cfg.withAttributes(in.Attributes)
	if err != nil {
		return nil, err
	}
	if err := f.checkDeadLetterTarget(q.name, &cfg); err != nil {
		return nil, err
	}
	q.cfg = cfg
	q.lastModified = now
	q.wakeLocked() // a receive waits with the old settings otherwise
	return &sqs.SetQueueAttributesOutput{}, nil
}

func (f *Fake) listQueues(in *sqs.ListQueuesInput, _ *Fault) (*sqs.ListQueuesOutput, error) {
	limit := 1000
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 1000 {
			return nil, errInvalidParameter("Value %d for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.", *in.MaxResults)
		}
		limit = int(*in.MaxResults)
	}
	after := ""
	if in.NextToken != nil {
		b, err := base64.RawURLEncoding.DecodeString(*in.NextToken)
		if err != nil {
			return nil, errInvalidParameter("Invalid NextToken value.")
		}
		after = string(b)
	}
	prefix := deref(in.QueueNamePrefix)
	out := &sqs.ListQueuesOutput{}
	for _, name := range f.sortedQueueNames() {
		if !strings.HasPrefix(name, prefix) || name <= after {
			continue
		}
		if len(out.QueueUrls) == limit {
			if in.MaxResults != nil {
				last := out.QueueUrls[limit-1]
				out.NextToken = ptr(base64.RawURLEncoding.EncodeToString([]byte(last[strings.LastIndexByte(last, '/')+1:])))
			}
			break
		}
		out.QueueUrls = append(out.QueueUrls, f.QueueURL(name))
	}
	return out, nil
}
