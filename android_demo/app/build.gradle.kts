plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.tinybeauty.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "com.tinybeauty.demo"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }

    // Stored, not deflated: MakeupModel memory-maps tinybeauty.tflite straight out of the APK
    // (AssetManager.openFd fails on compressed assets), and MediaPipe reads its .task bundle the same way.
    androidResources {
        noCompress += listOf("tflite", "task")
    }
}

val cameraxVersion = "1.3.4"
val litertVersion = "1.0.1"

dependencies {
    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.2")

    // CameraX: ImageAnalysis (RGBA_8888, keep-only-latest) + a PreviewView under the processed frames.
    implementation("androidx.camera:camera-core:$cameraxVersion")
    implementation("androidx.camera:camera-camera2:$cameraxVersion")
    implementation("androidx.camera:camera-lifecycle:$cameraxVersion")
    implementation("androidx.camera:camera-view:$cameraxVersion")

    // LiteRT (the former TensorFlow Lite) Interpreter API; GPU delegate optional at run time.
    // litert-gpu-api carries GpuDelegateFactory$Options, which GpuDelegate needs at class-load time.
    implementation("com.google.ai.edge.litert:litert:$litertVersion")
    implementation("com.google.ai.edge.litert:litert-gpu:$litertVersion")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litertVersion")

    // MediaPipe Tasks FaceLandmarker: the same 478-point face mesh makeup/align.py uses.
    implementation("com.google.mediapipe:tasks-vision:0.10.14")
}
