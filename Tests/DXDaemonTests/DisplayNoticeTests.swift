@testable import DXAcquisition
@testable import DXControl
@testable import DXDaemon
import Foundation
import Synchronization
import Testing

/// The rule of `ExamNoticeHub.send` for any connection, the step's own or a
/// subscriber's: images and progress are for display and are not queued while the connection
/// has more than `ExamNoticeHub.unsentLimit` lines it has not taken; steps and warnings always
/// are. (The integration test `aClientThatStopsReadingDuringItsStepStillGetsItsAnswer` shows the
/// client's side; at test speed a step's notices fit in the socket's own buffer, so the rule is
/// shown here with the connection's count of unsent lines set.)
@Suite("Display notices to a connection that stopped reading")
struct DisplayNoticeTests {
    static func methods(unsent: Int) -> [String] {
        let sent = Mutex<[String]>([])
        let context = ControlContext(connectionID: 1, peer: nil, role: .technologist,
                                     sendLine: { line in sent.withLock { $0.append(String(decoding: line, as: UTF8.self)) } },
                                     addStream: { _ in }, unsent: { unsent })
        let progress = ScanProgress(scanID: 3, lines: 10, plannedLines: 220, gaps: 0, linesPerSecond: 100, etaSeconds: 2.1)
        let notices: [ExamNotice] = [
            .step(examID: 9, site: .apSpine, phase: "scanning"),
            .progress(examID: 9, site: .apSpine, progress),
            .image(examID: 9, site: .apSpine, ImageRows(plannedLines: 220, rows: [.init(line: 10, bone: [1, 2, 3])])),
            .warning(examID: 9, site: .apSpine, ExamWarning(kind: .jitter, message: "late line")),
        ]
        for n in notices { ExamNoticeHub.send(n, on: context) }
        return sent.withLock { $0 }.compactMap { line in
            (try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)))?["method"]?.stringValue
        }
    }

    @Test func imagesAndProgressWaitWhileStepsAndWarningsGo() {
        let all = ["exam.step", "scan.progress", "scan.image", "exam.warning"]
        #expect(Self.methods(unsent: 0) == all)
        #expect(Self.methods(unsent: ExamNoticeHub.unsentLimit) == all)
        #expect(Self.methods(unsent: ExamNoticeHub.unsentLimit + 1) == ["exam.step", "exam.warning"])
        #expect(Self.methods(unsent: 8000) == ["exam.step", "exam.warning"])
    }
}
