package sink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/parley-dev/parley/evidence"
)

// Kafka produces each activity as a record of a topic, keyed by connector (so that one
// connector's activities stay in order on one partition), with the Activity's name in the
// header "key" for deduplication. The producer is franz-go's idempotent one with acks from
// all in-sync replicas.
type Kafka struct {
	client *kgo.Client
	topic  string
}

// NewKafka connects lazily to brokers; tlsConfig (nil: plaintext) and mechanism (nil: no
// SASL; franz-go's plain or scram) secure the connection.
func NewKafka(brokers []string, topic string, tlsConfig *tls.Config, mechanism sasl.Mechanism) (*Kafka, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // franz-go's producer is idempotent by default with these acks
		kgo.ProducerLinger(0),
		// The sink retries whole batches itself, with its own backoff and bound: a
		// produce that cannot finish returns instead of retrying inside the client forever.
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
	if tlsConfig != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsConfig))
	}
	if mechanism != nil {
		opts = append(opts, kgo.SASL(mechanism))
	}
	c, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Kafka{client: c, topic: topic}, nil
}

// Deliver implements Destination: the batch is produced and flushed; any record's failure
// fails the batch (the sink produces it again; receivers deduplicate by the key header).
func (k *Kafka) Deliver(ctx context.Context, batch []Item) error {
	records := make([]*kgo.Record, len(batch))
	for i, it := range batch {
		var value []byte
		var err error
		headers := []kgo.RecordHeader{{Key: "key", Value: []byte(it.Key)}}
		if it.Checkpoint != nil {
			// {"checkpoint": {...}}, as parley verify reads it, on the partition of the
			// connector's activities, after those it covers.
			value, err = json.Marshal(evidence.CheckpointLine{Checkpoint: it.Checkpoint})
			headers = append(headers, kgo.RecordHeader{Key: "kind", Value: []byte("checkpoint")})
		} else if it.Raw != nil {
			value = it.Raw
		} else {
			value, err = json.Marshal(it.Record)
		}
		if err != nil {
			return err
		}
		records[i] = &kgo.Record{Key: []byte(it.connector()), Value: value, Headers: headers}
	}
	if err := k.client.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// Close implements Destination.
func (k *Kafka) Close() error {
	k.client.Close()
	return nil
}
