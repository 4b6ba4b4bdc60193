pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()        // LiteRT (com.google.ai.edge.litert), CameraX, AndroidX
        mavenCentral()  // MediaPipe tasks-vision
    }
}

rootProject.name = "TinyBeautyDemo"
include(":app")
