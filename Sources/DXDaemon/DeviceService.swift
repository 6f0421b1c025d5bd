import DXAcquisition
import DXDevice
import DXProtocol
import DXTransport
import Logging
import ServiceLifecycle

/// Owns the link to the DX-1: connects (and reconnects after a loss), and on shutdown
/// turns X-rays off before anything else stops.
public final class DeviceService: Service {
    public let session: DeviceSession
    public let runner: ScanRunner
    private let logger: Logger
    private let clock: any Clock<Duration>

    public init(transport: any DeviceTransport, configuration: DaemonConfiguration, clock: any Clock<Duration>, logger: Logger) {
        let recorder = RecordingTransport(transport)
        self.session = DeviceSession(transport: recorder, clock: clock, logger: logger,
                                     commandTimeout: .milliseconds(configuration.commandTimeoutMs))
        self.runner = ScanRunner(session: session, clock: clock, recorder: recorder,
                                 captureDirectory: configuration.recordCaptures ? configuration.captureDirectory : nil,
                                 logger: logger)
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.maintainLink() }
        await shutdownSafely()
    }

    private func maintainLink() async {
        var attempt = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let notices = await session.notices()
                try await session.connect()
                attempt = 0
                for await n in notices {
                    if case .linkLost = n { break }
                    if Task.isShuttingDownGracefully { return }
                }
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 30 == 0 {
                    logger.warning("DX-1 not available; retrying", metadata: ["error": "\(error)"])
                }
            }
            do { try await clock.sleep(for: .seconds(1)) } catch { return }
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
