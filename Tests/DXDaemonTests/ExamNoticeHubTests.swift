import DXAcquisition
@testable import DXDaemon
import Testing

@Suite("The exams' notifications to subscribers")
struct ExamNoticeHubTests {
    static func step(_ exam: Int64, _ phase: String = "scanning") -> ExamNotice { .step(examID: exam, site: .apSpine, phase: phase) }
    static func exam(_ n: ExamNotice) -> Int64? { if case let .step(id, _, _) = n { id } else { nil } }

    /// A subscriber gets the steps other connections start, never its own (it has them from
    /// the step already).
    @Test func aSubscriberGetsOthersStepsNotItsOwn() async {
        let hub = ExamNoticeHub()
        let console = hub.subscribe(connection: 1)
        hub.publish(Self.step(7), from: 1)
        hub.publish(Self.step(8), from: 2)
        var seen: [Int64] = []
        for await n in console { seen.append(Self.exam(n) ?? -1); if seen.count == 1 { break } }
        #expect(seen == [8])
    }

    /// A subscriber that does not read keeps the newest `bufferSize`, in order: the daemon's
    /// memory and the step's pace do not depend on how fast a screen reads.
    @Test func aSlowSubscriberKeepsTheNewestOnly() async {
        let hub = ExamNoticeHub()
        var stream: AsyncStream<ExamNotice>? = hub.subscribe(connection: 1)
        for k in 0..<1000 { hub.publish(Self.step(Int64(k)), from: 2) }
        var seen: [Int64] = []
        if let s = stream {
            for await n in s {
                seen.append(Self.exam(n) ?? -1)
                if seen.count == ExamNoticeHub.bufferSize { break }
            }
        }
        #expect(seen.first == Int64(1000 - ExamNoticeHub.bufferSize) && seen.last == 999 && seen.count == ExamNoticeHub.bufferSize)
        // Dropped with its connection: no longer sent anything.
        stream = nil
        #expect(hub.count == 0)
    }
}
