import DXAcquisition
import DXControl
import Foundation
import Testing

/// The DICOM queue's alert as `service.metrics` gives it: stuck when anything waited longer
/// than the alert time or failed, objects and procedure steps alike.
@Suite("DICOM queue metrics")
struct DicomQueueMetricsTests {
    static let t0 = Date(timeIntervalSince1970: 1_796_376_000)

    static func object(_ id: Int64, _ state: OutboxObject.State, since: Date) -> OutboxObject {
        OutboxObject(id: id, examID: 1, revision: 1, name: "image-ap_spine", sopClassUID: "1.2.840.10008.5.1.4.1.1.7", sopInstanceUID: "2.25.\(id)",
                     path: "/x", state: state, attempts: 1, lastError: state == .pending ? "PACS down" : nil, createdAt: since, pendingSince: since,
                     nextAttemptAt: since, sentAt: nil)
    }

    static func step(_ state: PerformedStepRecord.State, attempts: Int, error: String?, waitingSince: Date? = nil) -> PerformedStepRecord {
        PerformedStepRecord(examID: 2, sopInstanceUID: "2.25.9", state: state, attempts: attempts, lastError: error, queuedAt: t0, nextAttemptAt: t0,
                            createdAt: nil, endedAt: nil, waitingSince: waitingSince)
    }

    @Test func aQueueWaitingLongerThanTheAlertTimeIsStuck() {
        let objects = [Self.object(1, .pending, since: Self.t0), Self.object(2, .sent, since: Self.t0)]
        let young = DicomQueueMetrics(DicomQueueStatus(objects: objects, now: Self.t0.addingTimeInterval(1799), alertAfterSeconds: 1800))
        #expect(young.pending == 1 && !young.stuck && young.oldestPendingSeconds == 1799)
        let old = DicomQueueMetrics(DicomQueueStatus(objects: objects, now: Self.t0.addingTimeInterval(1801), alertAfterSeconds: 1800))
        #expect(old.stuck && old.alertAfterSeconds == 1800)
    }

    @Test func aFailedObjectOrStepIsStuckAtOnce() {
        let failed = DicomQueueMetrics(DicomQueueStatus(objects: [Self.object(1, .failed, since: Self.t0)], now: Self.t0, alertAfterSeconds: 1800))
        #expect(failed.failed == 1 && failed.stuck)
        let refused = DicomQueueMetrics(DicomQueueStatus(objects: [], steps: [Self.step(.failed, attempts: 1, error: "N-SET refused")], now: Self.t0,
                                                         alertAfterSeconds: 1800))
        #expect(refused.failed == 1 && refused.stuck)
    }

    @Test func aStepTheRISDoesNotAnswerWaitsLikeAnObject() {
        let unanswered = DicomQueueStatus(objects: [], steps: [Self.step(.create, attempts: 3, error: "N-CREATE: connection refused", waitingSince: Self.t0)],
                                          now: Self.t0.addingTimeInterval(1801), alertAfterSeconds: 1800)
        #expect(unanswered.stuck && DicomQueueMetrics(unanswered).stepsOpen == 1)
        // The wait counts from the message's first refusal, not from the exam's start: an
        // N-SET first refused a minute ago after a long exam is not stuck.
        let justRefused = DicomQueueStatus(objects: [], steps: [Self.step(.inProgress, attempts: 2, error: "N-SET: connection refused",
                                                                          waitingSince: Self.t0.addingTimeInterval(3540))],
                                           now: Self.t0.addingTimeInterval(3600), alertAfterSeconds: 1800)
        #expect(!justRefused.stuck)
        // In progress and answered: the exam is simply running, nothing waits.
        let running = DicomQueueStatus(objects: [], steps: [Self.step(.inProgress, attempts: 1, error: nil)], now: Self.t0.addingTimeInterval(86_400),
                                       alertAfterSeconds: 1800)
        #expect(!running.stuck && DicomQueueMetrics(running).stepsOpen == 1)
    }
}
