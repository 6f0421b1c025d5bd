import Foundation

/// One DICOM object waiting for, or done with, its peer: the DICOM service's persistent
/// queue (`dicom_object`). It survives restarts of either process; an object is marked sent
/// only when the peer has answered its C-STORE with success.
public struct OutboxObject: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        /// Waiting to be sent (again: `attempts` failed so far).
        case pending
        /// The peer answered success (or a warning, kept in `lastError`).
        case sent
        /// The peer refused it for a reason sending again cannot mend (the object does not
        /// match its SOP class, is not understood or not supported, or its file is gone): not
        /// retried; a service engineer's resend tries again.
        case failed
        /// Replaced before it was sent by a later revision of the exam's results (a correction).
        case superseded
        /// Built with no storage peer configured: kept for `dexa dicom export`, not sent.
        case local
    }

    public var id: Int64
    public var examID: Int64
    public var revision: Int
    public var name: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var path: String
    public var state: State
    public var attempts: Int
    public var lastError: String?
    public var createdAt: Date
    /// Since when it waits: queued, or asked to be sent again.
    public var pendingSince: Date
    public var nextAttemptAt: Date
    public var sentAt: Date?
    /// Storage commitment (when a commitment peer is configured): when it was asked for, when
    /// the PACS committed the object, and why it last refused (the object is then sent again).
    public var commitmentRequestedAt: Date?
    public var committedAt: Date?
    public var commitmentError: String?

    public enum CodingKeys: String, CodingKey {
        case id, revision, name, path, state, attempts
        case examID = "exam_id", sopClassUID = "sop_class_uid", sopInstanceUID = "sop_instance_uid", lastError = "last_error"
        case createdAt = "created_at", pendingSince = "pending_since", nextAttemptAt = "next_attempt_at", sentAt = "sent_at"
        case commitmentRequestedAt = "commitment_requested_at", committedAt = "committed_at", commitmentError = "commitment_error"
    }

    public init(id: Int64, examID: Int64, revision: Int, name: String, sopClassUID: String, sopInstanceUID: String, path: String, state: State,
                attempts: Int, lastError: String?, createdAt: Date, pendingSince: Date, nextAttemptAt: Date, sentAt: Date?,
                commitmentRequestedAt: Date? = nil, committedAt: Date? = nil, commitmentError: String? = nil) {
        self.id = id; self.examID = examID; self.revision = revision; self.name = name; self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID; self.path = path; self.state = state; self.attempts = attempts; self.lastError = lastError
        self.createdAt = createdAt; self.pendingSince = pendingSince; self.nextAttemptAt = nextAttemptAt; self.sentAt = sentAt
        self.commitmentRequestedAt = commitmentRequestedAt; self.committedAt = committedAt; self.commitmentError = commitmentError
    }
}

/// The exam as a Modality Performed Procedure Step at the RIS (`mpps`): announced when the
/// exam starts, completed or discontinued when its objects are built.
public struct PerformedStepRecord: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        /// The N-CREATE (IN PROGRESS) is due.
        case create
        /// The RIS knows the step in progress; the N-SET goes when the exam has ended.
        case inProgress = "in_progress"
        case completed
        case discontinued
        /// The RIS refused the step for good (the error says why); not tried again.
        case failed
    }

    public var examID: Int64
    public var sopInstanceUID: String
    public var state: State
    public var attempts: Int
    public var lastError: String?
    /// When the step was first seen; when the RIS accepted the N-CREATE and the last N-SET.
    public var queuedAt: Date
    public var nextAttemptAt: Date
    public var createdAt: Date?
    public var endedAt: Date?
    /// Since when the current message (N-CREATE or N-SET) has gone unaccepted; nil when none
    /// waits (the exam may simply be running).
    public var waitingSince: Date?

    public enum CodingKeys: String, CodingKey {
        case state, attempts
        case examID = "exam_id", sopInstanceUID = "sop_instance_uid", lastError = "last_error", queuedAt = "queued_at"
        case nextAttemptAt = "next_attempt_at", createdAt = "created_at", endedAt = "ended_at", waitingSince = "waiting_since"
    }

    public init(examID: Int64, sopInstanceUID: String, state: State, attempts: Int, lastError: String?, queuedAt: Date, nextAttemptAt: Date,
                createdAt: Date?, endedAt: Date?, waitingSince: Date? = nil) {
        self.examID = examID; self.sopInstanceUID = sopInstanceUID; self.state = state; self.attempts = attempts; self.lastError = lastError
        self.queuedAt = queuedAt; self.nextAttemptAt = nextAttemptAt; self.createdAt = createdAt; self.endedAt = endedAt; self.waitingSince = waitingSince
    }
}

/// Published results not yet turned into objects by the DICOM service.
public struct UnbuiltResults: Sendable, Equatable, Codable {
    public var examID: Int64
    public var revision: Int
    public var publishedAt: Date
    /// Why they cannot be built, when the DICOM service said so; nil while they wait.
    public var error: String?

    public enum CodingKeys: String, CodingKey { case revision, error, examID = "exam_id", publishedAt = "published_at" }

    public init(examID: Int64, revision: Int, publishedAt: Date, error: String?) {
        self.examID = examID; self.revision = revision; self.publishedAt = publishedAt; self.error = error
    }
}

/// The DICOM queue as the technologist and the service engineer see it (`dicom.queue`): the
/// objects, the results not yet built, and whether the queue is stuck: an object waiting, or
/// results unbuilt, longer than the alert time, or any object or results that failed.
public struct DicomQueueStatus: Sendable, Equatable, Codable {
    public var objects: [OutboxObject]
    public var unbuilt: [UnbuiltResults]
    public var pending: Int
    public var sent: Int
    /// Of the sent, those the PACS committed to (storage commitment).
    public var committed: Int
    public var failed: Int
    /// Seconds the longest-waiting object (or unbuilt results) has waited; nil when none waits.
    public var oldestPendingSeconds: Double?
    /// The alert time (seconds) and whether the queue needs someone to look.
    public var alertAfterSeconds: Double
    public var stuck: Bool
    /// The exams' procedure steps at the RIS (MPPS), when one is configured.
    public var steps: [PerformedStepRecord]

    public enum CodingKeys: String, CodingKey {
        case objects, unbuilt, pending, sent, failed, stuck, steps, committed
        case oldestPendingSeconds = "oldest_pending_s", alertAfterSeconds = "alert_after_s"
    }

    /// A step that failed counts as failed; one whose N-CREATE or N-SET has been refused or
    /// unanswered (attempts made, still due) waits like an object.
    public init(objects: [OutboxObject], unbuilt: [UnbuiltResults] = [], steps: [PerformedStepRecord] = [], now: Date, alertAfterSeconds: Double) {
        self.objects = objects
        self.unbuilt = unbuilt
        self.steps = steps
        pending = objects.filter { $0.state == .pending }.count
        sent = objects.filter { $0.state == .sent }.count
        committed = objects.filter { $0.state == .sent && $0.committedAt != nil }.count
        failed = objects.filter { $0.state == .failed }.count + unbuilt.filter { $0.error != nil }.count + steps.filter { $0.state == .failed }.count
        let waits = objects.filter { $0.state == .pending }.map { now.timeIntervalSince($0.pendingSince) }
            + unbuilt.filter { $0.error == nil }.map { now.timeIntervalSince($0.publishedAt) }
            + steps.filter { $0.state == .create || $0.state == .inProgress }.compactMap { $0.waitingSince.map(now.timeIntervalSince) }
            + objects.filter { $0.state == .sent && $0.committedAt == nil }.compactMap { $0.commitmentRequestedAt.map(now.timeIntervalSince) }
        oldestPendingSeconds = waits.max()
        self.alertAfterSeconds = alertAfterSeconds
        stuck = failed > 0 || (oldestPendingSeconds ?? 0) > alertAfterSeconds
    }
}
