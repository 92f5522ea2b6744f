package v1alpha1

// Condition types of ExternalConnector and ConversationRules.
const (
	// ConditionValid says whether a ConversationRules compiles; its message lists every
	// error with its field path.
	ConditionValid = "Valid"
	// ConditionRulesResolved says whether an ExternalConnector's rules were found and valid.
	ConditionRulesResolved = "RulesResolved"
	// ConditionReady says whether a connector's pods serve (kstatus-compatible).
	ConditionReady = "Ready"
	// ConditionEngineConnected says whether a connector's pods hold a stream to the engine.
	ConditionEngineConnected = "EngineConnected"
	// ConditionSharedMemoryReady says whether a connector's pods reach their shared-memory
	// store (Redis, Valkey); absent while no pod has reported one.
	ConditionSharedMemoryReady = "SharedMemoryReady"
)

// Reasons of the Valid condition.
const (
	ReasonCompiled = "Compiled"
)

// Reasons of the RulesResolved condition.
const (
	ReasonResolved       = "Resolved"
	ReasonRulesNotFound  = "RulesNotFound"
	ReasonRulesInvalid   = "RulesInvalid"
	ReasonRulesDisabled  = "RulesDisabled"
	ReasonGroupNotFound  = "GroupNotFound"
	ReasonGroupAmbiguous = "GroupAmbiguous"
)

// Reasons of the Ready condition and of the ExternalConnector controller's events.
const (
	ReasonReplicasReady    = "ReplicasReady"
	ReasonReplicasNotReady = "ReplicasNotReady"
	ReasonScaledToZero     = "ScaledToZero"
	ReasonJobRunning       = "JobRunning"
	ReasonJobPending       = "JobPending"
	// ReasonUnschedulable: a connector pod cannot be scheduled (a hostPort taken, no node
	// matching its selector).
	ReasonUnschedulable = "Unschedulable"
	// ReasonContainerWaiting: a connector container waits (an image that cannot be pulled,
	// a crash loop).
	ReasonContainerWaiting    = "ContainerWaiting"
	ReasonJobSucceeded        = "JobSucceeded"
	ReasonJobFailed           = "JobFailed"
	ReasonRulesNotResolved    = "RulesNotResolved"
	ReasonInvalidName         = "InvalidName"
	ReasonWorkloadFailed      = "WorkloadFailed"
	ReasonTerminating         = "Terminating"
	ReasonCreated             = "Created"
	ReasonDeleted             = "Deleted"
	ReasonReplaced            = "Replaced"
	ReasonLowPortOnHost       = "LowPortOnHostNetwork"
	ReasonEndFailed           = "EndFailed"
	ReasonGracePeriodExceeded = "GracePeriodExceeded"
	ReasonEnded               = "Ended"
)

// Reasons of the EngineConnected condition and of the engine's events.
const (
	ReasonRulesUpdated       = "RulesUpdated"
	ReasonPaused             = "Paused"
	ReasonResumed            = "Resumed"
	ReasonStarted            = "Started"
	ReasonStopped            = "Stopped"
	ReasonConnectorLost      = "ConnectorLost"
	ReasonRuleAlert          = "RuleAlert"
	ReasonAlertsSuppressed   = "AlertsSuppressed"
	ReasonActivitiesDropped  = "ActivitiesDropped"
	ReasonEngineConnected    = "Connected"
	ReasonEngineDisconnected = "Disconnected"
)

// Reasons of the SharedMemoryReady condition, and of the engine's events when a store is
// lost (Warning) and when it recovers (Normal).
const (
	ReasonSharedMemoryReady     = "StoreReady"
	ReasonSharedMemoryLost      = "SharedMemoryLost"
	ReasonSharedMemoryRecovered = "SharedMemoryRecovered"
)

// FinalizerGracefulEnd holds a deleted connector until its pods have ended their
// conversations and flushed their activities, or its grace period has passed.
const FinalizerGracefulEnd = "parley.io/graceful-end"

// Reasons of an ActivitySink's Ready condition.
const (
	// ReasonSinkConfigured: the sink's spec is valid and its Secrets hold what it needs.
	ReasonSinkConfigured = "Configured"
	// ReasonSinkInvalid: the spec cannot work; the message lists every error with its path.
	ReasonSinkInvalid = "Invalid"
	// ReasonSecretNotFound: a Secret the sink names does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing: a Secret the sink names lacks a key it needs.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonSinkDropping: the engine dropped activities of the sink (its Warning event).
	ReasonSinkDropping = "ActivitiesDropped"
)
