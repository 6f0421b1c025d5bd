import DXAcquisition
import DXClinical
import DXControl
import DXDecomposition
import DXProtocol
import DXStore
import DXSimulator
import DXTransport
import DXUSB
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The whole daemon, assembled from its configuration: device link, optional embedded
/// simulator and the control socket, as services that start in order and stop in reverse
/// (SIGTERM: the control server cancels running scans, the device service sends XRAY_OFF,
/// then the simulator goes).
public struct Daemon: Sendable {
    public let configuration: DaemonConfiguration
    public let logger: Logger

    public init(configuration: DaemonConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        ExamStore.limitMemory()
        let clock = ScaledClock(speed: configuration.timeScale)
        if configuration.timeScale != 1 {
            logger.notice("time runs \(configuration.timeScale)× faster than real time (simulator use only)")
            if case .usb = configuration.device {
                // Only a simulator behind USB emulation runs fast; a real unit keeps real time.
                // Heartbeats then come more often and timeouts sooner: never less safe.
                logger.warning("time_scale with a USB device: only for a simulated DX-1 behind USB emulation")
            }
        }
        if configuration.recordCaptures {
            do { try FileManager.default.createDirectory(atPath: configuration.captureDirectory, withIntermediateDirectories: true) } catch {
                logger.error("cannot create capture directory; captures disabled", metadata: ["path": "\(configuration.captureDirectory)", "error": "\(error)"])
            }
        }
        var services: [any Service] = []
        let transport: any DeviceTransport
        switch configuration.device {
        case .embeddedSimulator:
            let scene: any Scene
            do { scene = try StandardPhantoms.scene(named: configuration.simulatorPhantom) } catch {
                throw ConfigurationError.invalid("simulator_phantom", "\(error)")
            }
            var simConfig = SimulatorConfiguration(seed: configuration.simulatorSeed)
            simConfig.freedoms = LinkFreedoms(seed: configuration.simulatorOrderings)
            simConfig.physics = configuration.simulatorPhysics
            simConfig.watchdogWallFloor = configuration.simulatorWatchdogFloorMs.map { .milliseconds($0) }
            if let serial = configuration.simulatorSerial { simConfig.info.serial = serial }
            logger.notice("embedded simulator: \(simConfig.freedoms), physics \(simConfig.physics.rawValue)")
            let sim = EmbeddedSimulator(configuration: simConfig, clock: clock, scene: scene)
            transport = sim.transport
            services.append(EmbeddedSimulatorService(run: { await sim.run() }, stop: { sim.shutdown() }))
        case .simulatorSocket(let path):
            transport = SimLinkTransport(path: path)
        case .usb(let serial):
            transport = USBTransport(match: USBDeviceMatch(vendorID: configuration.usbVendorID, productID: configuration.usbProductID, serial: serial),
                                     logger: logger)
        }
        let device = DeviceService(transport: transport, configuration: configuration, clock: clock, logger: logger)
        services.append(device)
        let notifier = SystemdNotifier.fromEnvironment()
        let audit = AuditLog(path: configuration.auditLogPath, logger: logger)
        let policy = AccessPolicy(technologistGroup: configuration.technologistGroup, serviceGroup: configuration.serviceGroup)
        let exams = try Self.examSequencer(configuration, device: device, logger: logger)
        for note in try await exams.recover(countLines: Self.linesInCapture) { logger.warning("recovered: \(note)") }
        let handler = DaemonControlHandler(device: device, exams: exams, deviceName: transport.name, audit: audit, configuration: configuration,
                                           clock: clock, logger: logger)
        let inherited = SocketActivation.inheritedListener()
        let listener: ControlServer.Listener = inherited.map { .inherited($0) } ?? .path(configuration.socketPath)
        let configuration = self.configuration
        let logger = self.logger
        let server = ControlServer(listener: listener, handler: handler, logger: logger, admit: { peer in
            let decision = policy.admission(for: peer)
            if case .refuse(let why) = decision { audit.record(peer: peer, role: nil, method: "(connect)", decision: "refused", detail: why) }
            return decision
        }, onListening: {
            if inherited == nil { Self.setSocketPermissions(configuration, logger: logger) }
            // The socket is bound; the device may still be on its way (STATUS says so).
            Task { notifier.notify("READY=1\nSTATUS=" + (await device.statusLine)) }
        })
        services.append(ControlService(server: server))
        device.onLinkChange = { line in notifier.notify("STATUS=" + line) }
        services.append(SystemdService(notifier: notifier, device: device, logger: logger))
        if let ms = ProcessInfo.processInfo.environment["DEXAD_TEST_WEDGE_SESSION_AFTER_MS"].flatMap({ Int($0) }) {
            // Test hook (see DeviceSession.wedgeForTesting): wedge the device session.
            logger.warning("test hook: the device session will be wedged", metadata: ["after_ms": "\(ms)"])
            Task {
                try? await Task.sleep(for: .milliseconds(ms))
                await device.session.wedgeForTesting(seconds: 3600)
            }
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.notice("dexad stopped")
    }
}

extension Daemon {
    /// The exam store and sequencer. Scans that were running when the daemon last stopped are
    /// marked interrupted here, with the lines their captures hold, before any request is served.
    static func examSequencer(_ configuration: DaemonConfiguration, device: DeviceService, logger: Logger) throws -> ExamSequencer {
        let store: ExamStore
        do {
            try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
            store = try ExamStore(path: configuration.examDatabasePath)
        } catch {
            throw ConfigurationError.invalid("exam_database", "cannot open \(configuration.examDatabasePath): \(error)")
        }
        let examProtocol: ExamProtocol
        do { examProtocol = try configuration.examProtocol.map { try ExamProtocol.load(path: $0) } ?? .standard } catch {
            throw ConfigurationError.invalid("exam_protocol", "\(error)")
        }
        let reference: ReferenceSet
        do { reference = ReferenceSet.nhanes.with(ageMatched: try configuration.zReference.map { try AgeMatchedReference.load(path: $0) }) } catch {
            throw ConfigurationError.invalid("z_reference", "\(error)")
        }
        let calibrations = CalibrationStore(stateDirectory: configuration.stateDirectory)
        let sequencer = ExamSequencer(recorder: store, runner: device.runner, session: device.session, clock: device.clock,
                                      examProtocol: examProtocol, reference: reference,
                                      calibration: { calibrations.load().mapError { $0 as any Error } },
                                      qcLockout: .init(rules: configuration.qcRules, whenDue: configuration.qcWhenDue,
                                                       dayStartMinutes: configuration.qcDayStartMinutes), logger: logger)
        return sequencer
    }

    /// How many lines of a scan a capture holds (a record cut short by a crash is ignored).
    @Sendable static func linesInCapture(_ path: String, _ scanID: UInt32) -> Int? {
        guard let data = FileManager.default.contents(atPath: path), let contents = try? CaptureFormat.parse(Array(data)) else { return nil }
        return CaptureReader.scans(in: contents).first { $0.scan.scanID == scanID }?.lines.count
    }

    /// Without systemd the daemon creates the socket itself: give it the configured mode and
    /// group, as the socket unit would (`SocketMode=0660`, `SocketGroup=dexa`).
    static func setSocketPermissions(_ c: DaemonConfiguration, logger: Logger) {
        if chmod(c.socketPath, mode_t(c.socketMode)) != 0 {
            logger.warning("cannot set the control socket's mode", metadata: ["path": "\(c.socketPath)"])
        }
        if let g = c.socketGroup, let gid = AccessPolicy.groupID(g), chown(c.socketPath, uid_t.max, gid) != 0 {
            logger.warning("cannot give the control socket to its group", metadata: ["group": "\(g)"])
        }
    }
}

/// The control socket as a service.
struct ControlService: Service {
    let server: ControlServer
    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await server.run() }
        } catch where Task.isCancelled || Task.isShuttingDownGracefully || error is CancellationError {
            // Stopping is what was asked for.
        }
    }
}
