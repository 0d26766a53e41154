package faults

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ConfirmedPuts returns the partition keys (string attribute pkAttr) of the
// put requests of a BatchWriteItem call that DynamoDB confirmed written:
// those in the input and not handed back in UnprocessedItems. Items without
// pkAttr (those of another table: the idempotent sink batches its COMPLETE
// records with the results) are left out. The fault suite counts writes
// with it, in the tests and in the child consumer.
func ConfirmedPuts(in *dynamodb.BatchWriteItemInput, out *dynamodb.BatchWriteItemOutput, pkAttr string) []string {
	var keys []string
	for _, item := range confirmedItems(in, out, pkAttr) {
		keys = append(keys, stringValue(item, pkAttr))
	}
	return keys
}

// ConfirmedCompletes returns the ids (string attribute idAttr) of the
// idempotency records a BatchWriteItem call confirmed written as COMPLETE.
func ConfirmedCompletes(in *dynamodb.BatchWriteItemInput, out *dynamodb.BatchWriteItemOutput, idAttr, statusAttr, complete string) []string {
	var ids []string
	for _, item := range confirmedItems(in, out, idAttr) {
		if stringValue(item, statusAttr) == complete {
			ids = append(ids, stringValue(item, idAttr))
		}
	}
	return ids
}

// confirmedItems returns the items with a string keyAttr that a
// BatchWriteItem call put and did not hand back.
func confirmedItems(in *dynamodb.BatchWriteItemInput, out *dynamodb.BatchWriteItemOutput, keyAttr string) []map[string]types.AttributeValue {
	left := map[string]bool{}
	for _, reqs := range out.UnprocessedItems {
		for _, r := range reqs {
			if r.PutRequest != nil {
				left[stringValue(r.PutRequest.Item, keyAttr)] = true
			}
		}
	}
	var items []map[string]types.AttributeValue
	for _, reqs := range in.RequestItems {
		for _, r := range reqs {
			if r.PutRequest == nil {
				continue
			}
			if k := stringValue(r.PutRequest.Item, keyAttr); k != "" && !left[k] {
				items = append(items, r.PutRequest.Item)
			}
		}
	}
	return items
}

func stringValue(item map[string]types.AttributeValue, name string) string {
	if s, ok := item[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}
