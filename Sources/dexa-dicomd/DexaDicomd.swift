import ArgumentParser
import DXDicom
import DXDicomService
import DXStore
import Foundation
import Logging
import ServiceLifecycle

/// `dexa-dicomd`: the DICOM service. Its own process and unit (dexa-dicomd.service), so that
/// the process that turns X-rays on (dexad) opens no network connection.
@main
struct DexaDicomd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dexa-dicomd",
        abstract: "Send the exams' DICOM objects to the hospital: built from the results dexad publishes, queued in the exam store, sent to the storage peer.")

    @Option(help: "dexad's state directory (the exam store, exams.sqlite, and the scans).") var stateDirectory = "/var/lib/dexa"
    @Option(name: .customLong("dicom-config"), help: "The station's DICOM settings.") var dicomConfig = DicomConfiguration.defaultPath
    @Option(help: "Seconds between looks at the store.") var pollSeconds: Double = 2
    @Option(help: "Seconds to wait after an object's first failure (doubled each failure, at most 600).") var retrySeconds: Int = 10
    @Option(help: "debug, info, notice, warning or error.") var logLevel: String = "info"

    func run() async throws {
        var logger = Logger(label: "dexa-dicomd")
        guard let level = Logger.Level(rawValue: logLevel) else {
            FileHandle.standardError.write(Data("dexa-dicomd: --log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            throw ExitCode(64)  // EX_USAGE
        }
        logger.logLevel = level
        guard (0.05...60).contains(pollSeconds), (1...600).contains(retrySeconds) else {
            logger.critical("--poll-seconds must be 0.05 to 60 and --retry-seconds 1 to 600")
            throw ExitCode(64)
        }
        var config: DicomConfiguration
        do { config = try DicomConfiguration.load(path: dicomConfig) } catch {
            logger.critical("\(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
        // dexad's exam store, which dexad makes when it first starts (socket-activated: at
        // the first client). Waited for, never made here: an empty store in a wrong state
        // directory would wait for exams forever without a word.
        let database = stateDirectory + "/exams.sqlite"
        if !FileManager.default.fileExists(atPath: database) {
            logger.notice("waiting for dexad's exam store at \(database) (is --state-directory dexad's state_directory?)")
            while !FileManager.default.fileExists(atPath: database) { try await Task.sleep(for: .seconds(5)) }
        }
        let objects = stateDirectory + "/dicom"
        do { config.stationIdentity = try StationIdentity.load(directory: objects) } catch {
            logger.critical("cannot keep this station's identity in \(objects): \(error)")
            throw ExitCode(73)  // EX_CANTCREAT
        }
        ExamStore.limitMemory()
        let store = try ExamStore(path: database)
        var settings = DicomService.Settings(objectDirectory: objects)
        settings.pollInterval = .milliseconds(Int(pollSeconds * 1000))
        settings.firstWait = .seconds(retrySeconds)
        let service: DicomService
        do { service = try DicomService(store: store, config: config, settings: settings, logger: logger) } catch {
            logger.critical("the storage commitment listener: \(error)")
            throw ExitCode(71)  // EX_OSERR
        }
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
