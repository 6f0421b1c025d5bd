import DXAcquisition
import DXControl
import DXDevice
import DXProtocol
import DXTransport
import DXUSB
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Owns the link to the DX-1: connects (and reconnects after a loss), and on shutdown
/// turns X-rays off before anything else stops.
public final class DeviceService: Service, Sendable {
    public let session: DeviceSession
    public let runner: ScanRunner
    private let logger: Logger
    public let clock: any Clock<Duration>
    private let linkChange = Mutex<(@Sendable (String) -> Void)?>(nil)
    private let telemetry = DaemonTelemetry()
    private let started = ContinuousClock.now
    private let sensorHistory = Mutex<[(Date, SensorReadings)]>([])

    /// Runs a scan (the runner counts its outcome, as it does every scan's).
    public func run(_ plan: ScanPlan, progress: (@Sendable (ScanProgress) -> Void)? = nil) async throws -> ScanOutcome {
        try await runner.run(plan, progress: progress)
    }

    /// The DICOM queue's figures as last read (`service.metrics` reads them first).
    public func recordDicomQueue(_ q: DicomQueueMetrics?) { telemetry.dicomQueue(q) }

    public func metrics() async -> DaemonMetrics {
        telemetry.metrics(link: await session.counters, uptimeSeconds: uptime)
    }

    /// The same counters in Prometheus text format (swift-metrics, swift-prometheus).
    public func prometheusText() async -> String {
        telemetry.prometheus(link: await session.counters, uptimeSeconds: uptime)
    }

    private var uptime: Double {
        let up = ContinuousClock.now - started
        return Double(up.components.seconds) + Double(up.components.attoseconds) * 1e-18
    }

    /// Sensor readings sampled every minute (device time), newest last, for service reports.
    public var sensorSamples: [(Date, SensorReadings)] { sensorHistory.withLock { $0 } }

    private func sampleSensors() async {
        guard let bytes = try? await session.execute(.readSensors), let r = try? SensorReadings(decoding: bytes) else { return }
        sensorHistory.withLock { h in
            h.append((Date(), r))
            if h.count > 1440 { h.removeFirst(h.count - 1440) }
        }
    }

    /// Told (with a status line) whenever the device connects or the link is lost.
    public var onLinkChange: (@Sendable (String) -> Void)? {
        get { linkChange.withLock { $0 } }
        set { linkChange.withLock { $0 = newValue } }
    }

    /// One line for systemd's STATUS= and for logs.
    public var statusLine: String {
        get async {
            if await session.connected, let info = await session.info {
                return "Connected to \(info.model) \(info.serial) (firmware \(info.firmware))"
            }
            return "Waiting for the DX-1"
        }
    }

    let transport: any DeviceTransport

    public init(transport: any DeviceTransport, configuration: DaemonConfiguration, clock: any Clock<Duration>, logger: Logger) {
        self.transport = transport
        let recorder = RecordingTransport(transport)
        self.session = DeviceSession(transport: recorder, clock: clock, logger: logger,
                                     commandTimeout: .milliseconds(configuration.commandTimeoutMs))
        let telemetry = self.telemetry
        self.runner = ScanRunner(session: session, clock: clock, recorder: recorder,
                                 captureDirectory: configuration.recordCaptures ? configuration.captureDirectory : nil,
                                 nominalDAPPerMAs: configuration.dapPerMAs, logger: logger,
                                 onOutcome: { o in telemetry.count(o) })
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.maintainLink() }
        await shutdownSafely()
    }

    private func maintainLink() async {
        var attempt = 0
        var away = Stopwatch(ContinuousClock())  // real time: a person reads this warning
        var warned = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let notices = await session.notices()
                try await session.connect()
                attempt = 0
                telemetry.reconnected()
                onLinkChange?(await statusLine)
                await sampleSensors()
                let sampler = Task { [clock] in
                    while !Task.isCancelled {
                        do { try await clock.sleep(for: .seconds(60)) } catch { return }
                        await self.sampleSensors()
                    }
                }
                defer { sampler.cancel() }
                for await n in notices {
                    if case .linkLost(let why) = n {
                        onLinkChange?("Waiting for the DX-1 (link lost: \(why))")
                        break
                    }
                    if Task.isShuttingDownGracefully { return }
                }
                away = Stopwatch(ContinuousClock())
                warned = false
            } catch {
                attempt += 1
                // A unit that left (RESET, re-enumeration after boot) is back within 3 s (ICD §1):
                // not being there sooner is no news. Past that, say so (then every 30th try).
                if away.elapsed > .seconds(3) && !warned || attempt % 30 == 0 {
                    warned = true
                    logger.warning("DX-1 not available; retrying", metadata: ["error": "\(error)"])
                } else {
                    logger.debug("DX-1 not back yet", metadata: ["error": "\(error)"])
                }
            }
            // Retry soon after a loss (100 ms, then 200, 400, 800), then once a second.
            let wait = Duration.milliseconds(min(1000, 100 << min(max(attempt - 1, 0), 4)))
            if let usb = transport as? USBTransport {
                // Wake at once when udev reports the unit (ICD: back within 3 s after RESET).
                await usb.waitForArrival(timeout: wait)
                if Task.isCancelled { return }
            } else {
                do { try await clock.sleep(for: wait) } catch { return }
            }
        }
    }

    private func shutdownSafely() async {
        guard await session.connected else { return }
        _ = try? await runner.abort()
        do {
            try await session.xrayOff()
            logger.notice("X-rays off for shutdown")
        } catch {
            logger.error("XRAY_OFF at shutdown failed", metadata: ["error": "\(error)"])
        }
        await session.disconnect(reason: "daemon stopping")
    }
}

/// Runs the embedded simulator as a service of the daemon.
public struct EmbeddedSimulatorService: Service {
    let run: @Sendable () async -> Void
    let stop: @Sendable () -> Void

    public init(run: @escaping @Sendable () async -> Void, stop: @escaping @Sendable () -> Void) {
        self.run = run
        self.stop = stop
    }

    public func run() async throws {
        // The service group stops services in reverse order, so the device service has sent
        // XRAY_OFF before this runs.
        await withTaskCancellationOrGracefulShutdownHandler {
            await run()
        } onCancelOrGracefulShutdown: {
            stop()
        }
    }
}
