import ArgumentParser
import DXProtocol
import DXSimulator
import Foundation

/// `dexa-sim`: a simulated DX-1 on a Unix socket, with a fault-injection control socket
/// and the same commands on standard input.
@main
struct DexaSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dexa-sim",
        abstract: "A simulated DX-1 densitometer for dexad (--device sim:PATH).",
        discussion: "Fault commands (control socket or stdin, one per line):\n" + FaultCommand.help)

    @Option(name: .long, help: "Device socket the daemon connects to.")
    var socket: String = "/tmp/dexa-sim.sock"

    @Option(name: .long, help: "Fault-injection control socket (text commands, one per line).")
    var control: String?

    @Option(name: .long, help: "Time runs this many times faster than real time.")
    var speed: Double = 1

    @Option(name: .long, help: "Serial number the unit reports.")
    var serial: String = "DX1-000123"

    @Option(name: .long, help: "Detector channels.")
    var channels: UInt16 = 144

    @Option(name: .long, help: "Noise seed.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "What lies on the table: empty, calibration, esp, bench, patient, or a JSON file (an ICD §8 phantom or {\"patient\": {...}}).")
    var phantom: String = "empty"

    @Option(name: .long, help: ArgumentHelp("Physics model of the detector: \(PhysicsModel.allCases.map(\.rawValue).joined(separator: ", ")).",
                                            discussion: PhysicsModel.allCases.map { "\($0.rawValue): \($0.summary)" }.joined(separator: "\n")))
    var physics: PhysicsModel = .kramers

    @Option(name: .long, help: "Use the freedoms the ICD leaves a device (event order, record splitting, ...) as this seed picks them; 0 is the canonical order (docs/simulator.md).")
    var orderings: UInt64 = 0

    @Flag(name: .long, help: "Use every freedom the ICD leaves at once (events after responses and up to 40 ms late, ...), whatever --orderings says.")
    var allFreedoms = false

    @Flag(name: .long, help: "Lose the first data frame after each boot (its seq is used).")
    var loseFirstDataFrame = false

    @Option(name: .long, help: "Test speed only: the watchdog also waits this many ms of real time after the last host frame (docs/simulator.md).")
    var watchdogFloorMs: Int?

    @Flag(name: .long, help: "Read fault commands from standard input.")
    var stdin = false

    @Option(name: .long, help: "Print a standard phantom's ICD §8 JSON (calibration, esp, bench) and exit.")
    var printPhantom: String?

    func validate() throws {
        guard speed.isFinite, speed >= 0.01, speed <= 10_000 else { throw ValidationError("--speed must be 0.01 to 10000") }
        guard (1...4096).contains(Int(channels)) else { throw ValidationError("--channels must be 1 to 4096") }
        if let f = watchdogFloorMs, !(0...10_000).contains(f) { throw ValidationError("--watchdog-floor-ms must be 0 to 10000") }
    }

    func run() async throws {
        if let name = printPhantom {
            let phantoms = ["calibration": StandardPhantoms.calibration, "esp": StandardPhantoms.esp, "bench": StandardPhantoms.bench]
            guard let p = phantoms[name] else { throw ValidationError("no standard phantom \(name) (calibration, esp, bench)") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(p), as: UTF8.self))
            return
        }
        var info = SimulatorConfiguration.standardInfo
        info.serial = serial
        info.channels = channels
        let scene: any Scene
        do { scene = try StandardPhantoms.scene(named: phantom) } catch { throw ValidationError("\(error)") }
        var configuration = SimulatorConfiguration(info: info, seed: seed)
        configuration.freedoms = allFreedoms ? .all() : LinkFreedoms(seed: orderings)
        configuration.physics = physics
        configuration.freedoms.loseFirstDataFrame = loseFirstDataFrame
        configuration.watchdogWallFloor = watchdogFloorMs.map { .milliseconds($0) }
        let sim = SocketSimulator(devicePath: socket, controlPath: control,
                                  configuration: configuration,
                                  clock: ScaledClock(speed: speed), scene: scene)
        let firmware = sim.firmware
        if stdin {
            Thread {
                while let line = readLine() {
                    let sem = DispatchSemaphore(value: 0)
                    Task {
                        let reply = await SimulatorControl.reply(to: line, firmware: firmware)
                        if !reply.isEmpty { print(reply) }
                        sem.signal()
                    }
                    sem.wait()
                }
            }.start()
        }
        FileHandle.standardError.write(Data("dexa-sim: \(info.model) \(info.serial) on \(socket)\(control.map { ", control \($0)" } ?? ""), speed \(speed)x, \(configuration.freedoms)\n".utf8))
        let signals = SignalStop()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sim.run() }
            group.addTask { await signals.wait() }
            _ = try await group.next()
            group.cancelAll()
        }
        sim.stop()
    }
}

/// Ends the simulator on SIGTERM or SIGINT.
struct SignalStop: Sendable {
    func wait() async {
        let (stream, cont) = AsyncStream<Void>.makeStream()
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig)
            s.setEventHandler { cont.yield() }
            s.resume()
            sources.append(s)
        }
        for await _ in stream { break }
        withExtendedLifetime(sources) {}
    }
}

extension PhysicsModel: ExpressibleByArgument {}
