import DXAcquisition
import DXControl
import Synchronization

/// The exams' notifications for the connections that subscribed to them (`events.subscribe`
/// with `exams`): a screen that watches the day (the web console) sees an exam the CLI runs
/// as it runs. A step's own connection gets its notifications from the step itself, so a
/// subscriber is never sent those of the steps it started.
///
/// Each subscriber has a bounded buffer (`bufferSize` notifications, the newest kept), and its
/// connection is sent no image or progress while more than `unsentLimit` lines wait unwritten
/// for it: a subscriber that reads slowly loses images and progress, never the daemon's memory,
/// its own calls' answers or the step's pace (`publish` takes a lock and hands over). The
/// notifications are for display; the exam's record is in the store, and the console reads it
/// again every second.
final class ExamNoticeHub: Sendable {
    /// About 20 s of a scan's notifications (an image batch and a progress every 100 ms, a
    /// step now and then).
    static let bufferSize = 400
    /// Lines waiting unwritten for a subscriber's connection above which its images and
    /// progress are not sent (a scan's batch of image rows is a line of a few kB).
    static let unsentLimit = 64

    private struct Subscriber {
        var connection: Int
        var continuation: AsyncStream<ExamNotice>.Continuation
    }

    private let subscribers = Mutex<(next: Int, all: [Int: Subscriber])>((0, [:]))

    /// The notifications of steps other connections start, until the stream is dropped (the
    /// subscriber's connection closed).
    func subscribe(connection: Int) -> AsyncStream<ExamNotice> {
        let (stream, continuation) = AsyncStream<ExamNotice>.makeStream(bufferingPolicy: .bufferingNewest(Self.bufferSize))
        let id = subscribers.withLock { s in
            defer { s.next += 1 }
            s.all[s.next] = Subscriber(connection: connection, continuation: continuation)
            return s.next
        }
        continuation.onTermination = { [weak self] _ in self?.subscribers.withLock { _ = $0.all.removeValue(forKey: id) } }
        return stream
    }

    /// `notice` to every subscriber but the connection whose step it is.
    func publish(_ notice: ExamNotice, from connection: Int) {
        let targets = subscribers.withLock { s in s.all.values.filter { $0.connection != connection }.map(\.continuation) }
        for c in targets { c.yield(notice) }
    }

    var count: Int { subscribers.withLock { $0.all.count } }
}

extension ExamNoticeHub {
    /// One exam notice on a connection (the step's own or a subscriber's).
    ///
    /// Images and progress are for display: none is queued while the connection has more than
    /// `ExamNoticeHub.unsentLimit` lines it has not taken (steps, warnings and answers always
    /// go). A client stopped mid-step (`dexa exam run` suspended with Ctrl-Z) would otherwise
    /// have every image of the step queued for it, megabytes at test speed, and past the
    /// connection's 8,192 lines the answer to its own `exam.start` would be lost.
    static func send(_ notice: ExamNotice, on context: ControlContext) {
        switch notice {
        case .image, .progress:
            if context.unsentLines > ExamNoticeHub.unsentLimit { return }
        case .step, .warning:
            break
        }
        switch notice {
        case let .step(id, site, phase): context.notify(.examStep, ExamStepNotice(examID: id, site: site, phase: phase))
        case let .progress(id, site, p): context.notify(.scanProgress, ScanProgressNotice(p, examID: id, site: site))
        case let .warning(id, site, w): context.notify(.examWarning, ExamWarningNotice(examID: id, site: site, warning: w))
        case let .image(id, site, rows): context.notify(.scanImage, ScanImageNotice(examID: id, site: site, rows))
        }
    }
}
