package faults

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ConfirmedPuts returns the partition keys (string attribute pkAttr) of the
// put requests of a BatchWriteItem call that DynamoDB confirmed written:
// those in the input and not handed back in UnprocessedItems. The fault
// suite counts writes with it, in the tests and in the child consumer.
func ConfirmedPuts(in *dynamodb.BatchWriteItemInput, out *dynamodb.BatchWriteItemOutput, pkAttr string) []string {
	left := map[string]bool{}
	for _, reqs := range out.UnprocessedItems {
		for _, r := range reqs {
			if r.PutRequest != nil {
				left[stringValue(r.PutRequest.Item, pkAttr)] = true
			}
		}
	}
	var keys []string
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			if r.PutRequest == nil {
				continue
			}
			if pk := stringValue(r.PutRequest.Item, pkAttr); !left[pk] {
				keys = append(keys, pk)
			}
		}
	}
	return keys
}

func stringValue(item map[string]types.AttributeValue, name string) string {
	if s, ok := item[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}
